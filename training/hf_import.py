"""Import a transformers ``LlamaForCausalLM`` / ``Qwen3ForCausalLM`` (safetensors) as a Megatron-Core
``dist_checkpointing`` checkpoint: weights only, step 0, in the layout ``training.checkpoint`` reads::

    <out>/iter_0000000/     the sharded weights, plus logos_meta.json (config, vocab_size, source)
    <out>/latest            0
    <out>/lineage.json      where the weights came from, and the tokenizer's hash
    <out>/tokenizer/        the tokenizer given with --tokenizer, else the HF directory's own

The model is built at the requested TP/PP by ``tensor x pipeline`` worker processes (gloo on CPU, NCCL
on GPUs), each filling its shard from the safetensors through ``training.hf_mapping`` and writing it
collectively; the checkpoint then loads into any layout. Everything that can be wrong with the input
is checked in the calling process before any worker starts, and the checkpoint is written into a
temporary directory that is renamed at the end, so a failed import leaves nothing behind.

With an extended tokenizer (the base tokenizer plus the grammar's tokens), the embedding (and an
untied output layer) grows to the tokenizer's vocabulary, padded like training pads it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.checkpoint import LATEST_FILE, LINEAGE_FILE, META_FILE, SHARDED_METADATA, TOKENIZER_DIR, step_dir
from training.config import DataConfig, ParallelConfig, TrainConfig, config_from_dict, config_to_dict
from training.errors import TrainingError
from training.hf_mapping import (
    HF_EMBEDDING,
    HF_OUTPUT,
    MappingError,
    hf_to_megatron,
    model_config_from_hf,
    to_model_names,
)
from training.presets import ModelConfig

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
HF_TOKENIZER_FILE = "tokenizer.json"
# What of an HF model directory is its tokenizer (copied when no --tokenizer is given).
HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                      "merges.txt", "added_tokens.json", "chat_template.jinja")
# An imported checkpoint has no training data; the config must still validate (data.blend is required).
NO_BLEND = "none: weights imported from Hugging Face"


class HFImportError(TrainingError, ValueError):
    """The HF directory or the tokenizer cannot be imported (the message names the file and why)."""


@dataclass(frozen=True)
class ImportPlan:
    """Everything the workers need, checked in the calling process (plain data: it crosses spawn)."""

    hf_dir: str
    weight_files: dict[str, str]  # HF tensor name -> safetensors file
    model: dict[str, Any]  # ModelConfig fields
    tensor: int
    pipeline: int
    source_vocab: int  # rows of the HF embedding
    base_vocab: int  # tokens of the HF model's own tokenizer (rows that are trained)
    vocab_size: int  # tokens of the checkpoint's tokenizer
    added_from: int  # first id the --tokenizer adds to the base (== vocab_size when it adds none)
    padded_vocab: int
    out: str  # the temporary checkpoint root the workers write into
    master_port: int


# --- checking the input ----------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise HFImportError(f"{path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise HFImportError(f"{path}: not valid JSON: {exc}") from None


def _weight_files(hf_dir: Path) -> dict[str, str]:
    from safetensors import safe_open

    index = hf_dir / SAFETENSORS_INDEX
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise HFImportError(f"{index}: no weight_map")
        for file in set(weight_map.values()):
            if not (hf_dir / file).is_file():
                raise HFImportError(f"{index} names {file}, which does not exist")
        return {name: str(hf_dir / file) for name, file in weight_map.items()}
    single = hf_dir / SAFETENSORS_FILE
    if not single.is_file():
        raise HFImportError(f"{hf_dir} has neither {SAFETENSORS_FILE} nor {SAFETENSORS_INDEX}")
    with safe_open(str(single), framework="pt") as handle:
        return {name: str(single) for name in handle.keys()}  # noqa: SIM118 (safe_open is not iterable)


def expected_hf_shapes(model: ModelConfig, vocab: int) -> dict[str, tuple[int, ...]]:
    """Every HF tensor the mapping reads, with its shape (``vocab``: rows of the HF embedding)."""
    h, d = model.hidden_size, model.head_dim
    shapes = {HF_EMBEDDING: (vocab, h), "model.norm.weight": (h,)}
    if not model.tie_embeddings:
        shapes[HF_OUTPUT] = (vocab, h)
    for i in range(model.num_layers):
        p = f"model.layers.{i}."
        shapes |= {
            p + "self_attn.q_proj.weight": (model.num_attention_heads * d, h),
            p + "self_attn.k_proj.weight": (model.num_query_groups * d, h),
            p + "self_attn.v_proj.weight": (model.num_query_groups * d, h),
            p + "self_attn.o_proj.weight": (h, model.num_attention_heads * d),
            p + "mlp.gate_proj.weight": (model.ffn_hidden_size, h),
            p + "mlp.up_proj.weight": (model.ffn_hidden_size, h),
            p + "mlp.down_proj.weight": (h, model.ffn_hidden_size),
            p + "input_layernorm.weight": (h,),
            p + "post_attention_layernorm.weight": (h,),
        }
        if model.qk_layernorm:
            shapes |= {p + "self_attn.q_norm.weight": (d,), p + "self_attn.k_norm.weight": (d,)}
    return shapes


def _check_weights(weight_files: dict[str, str], model: ModelConfig, vocab: int) -> None:
    from safetensors import safe_open

    handles: dict[str, Any] = {}
    for name, shape in expected_hf_shapes(model, vocab).items():
        if name not in weight_files:
            raise HFImportError(f"{Path(next(iter(weight_files.values()), '?')).parent}: tensor {name} is missing")
        file = weight_files[name]
        if file not in handles:
            handles[file] = safe_open(file, framework="pt")
        found = tuple(handles[file].get_slice(name).get_shape())
        if found != shape:
            raise HFImportError(f"{file}: tensor {name} has shape {list(found)}, config.json implies {list(shape)}")


def _tokenizer_vocab(directory: Path) -> dict[str, int]:
    from tokenizers import Tokenizer

    path = directory / HF_TOKENIZER_FILE
    if not path.is_file():
        raise HFImportError(f"{path} does not exist")
    return Tokenizer.from_file(str(path)).get_vocab(with_added_tokens=True)


def tokenizer_identity(directory: Path) -> dict[str, Any] | None:
    """kind, content_hash and vocab_size of a logos tokenizer directory (native or extended); None for
    a tokenizer that is neither (a base model's own)."""
    from grammar.errors import GrammarError
    from grammar.tokenizer import EXTENSION_META_FILE, VOCAB_META_FILE, load_tokenizer

    if not any((directory / name).is_file() for name in (VOCAB_META_FILE, EXTENSION_META_FILE)):
        return None
    try:
        tokenizer = load_tokenizer(directory)
    except (OSError, GrammarError, KeyError, json.JSONDecodeError) as exc:
        raise HFImportError(f"{directory}: cannot load the tokenizer: {exc}") from None
    return {"kind": tokenizer.kind, "content_hash": tokenizer.content_hash, "vocab_size": tokenizer.vocab_size}


def _check_tokenizer(tokenizer_dir: Path, hf_dir: Path, base: dict[str, int]) -> int:
    """The vocabulary size of ``tokenizer_dir``, after checking that it extends the model's tokenizer:
    every token of the HF directory's tokenizer keeps its id."""
    vocab = _tokenizer_vocab(tokenizer_dir)
    identity = tokenizer_identity(tokenizer_dir)
    size = identity["vocab_size"] if identity else max(vocab.values()) + 1
    base_size = max(base.values()) + 1
    where = f"{tokenizer_dir / HF_TOKENIZER_FILE}"
    if size < base_size:
        raise HFImportError(f"{where}: the tokenizer has {size} tokens, fewer than the {base_size} of the model's "
                           f"tokenizer {hf_dir / HF_TOKENIZER_FILE}")
    for token, token_id in base.items():
        if vocab.get(token) != token_id:
            raise HFImportError(f"{where}: not an extension of the model's tokenizer {hf_dir / HF_TOKENIZER_FILE}: "
                               f"token {token!r} has id {vocab.get(token)} here, {token_id} there")
    return size


def plan_import(hf_dir: str | Path, out: str | Path, tensor: int = 1, pipeline: int = 1,
                tokenizer: str | Path | None = None) -> tuple[ImportPlan, ModelConfig, Path, dict[str, Any]]:
    """Check the input and decide the shapes; raises ``HFImportError`` / ``MappingError`` on bad input."""
    hf_dir, out = Path(hf_dir), Path(out)
    if not hf_dir.is_dir():
        raise HFImportError(f"{hf_dir} is not a directory")
    if out.exists() and any(out.iterdir()):
        raise HFImportError(f"--out {out} exists and is not empty")
    config_path = hf_dir / CONFIG_FILE
    hf_config = _read_json(config_path)
    model = model_config_from_hf(hf_config, str(config_path), name=hf_dir.name)
    for name, value, divides in (("tensor", tensor, model.num_query_groups), ("pipeline", pipeline, model.num_layers)):
        if value < 1 or divides % value:
            raise HFImportError(f"--{name} {value} must be >= 1 and divide {divides} "
                               f"({'key/value heads' if name == 'tensor' else 'layers'} in {config_path})")
    source_vocab = hf_config["vocab_size"]
    weight_files = _weight_files(hf_dir)
    _check_weights(weight_files, model, source_vocab)
    base = _tokenizer_vocab(hf_dir)
    base_size = max(base.values()) + 1
    if base_size > source_vocab:
        raise HFImportError(f"{hf_dir / HF_TOKENIZER_FILE} has {base_size} tokens but {config_path} only "
                           f"{source_vocab} embedding rows")
    tokenizer_dir = Path(tokenizer) if tokenizer is not None else hf_dir
    vocab_size = _check_tokenizer(tokenizer_dir, hf_dir, base) if tokenizer is not None else source_vocab
    identity = tokenizer_identity(tokenizer_dir) if tokenizer is not None else None
    plan = ImportPlan(
        hf_dir=str(hf_dir), weight_files=weight_files, model=dataclasses.asdict(model), tensor=tensor,
        pipeline=pipeline, source_vocab=source_vocab, base_vocab=base_size, vocab_size=vocab_size,
        added_from=min(base_size, vocab_size) if tokenizer is not None else vocab_size,
        padded_vocab=model.padded_vocab_size(vocab_size),
        out=str(out.parent / f".{out.name}.import-{uuid.uuid4().hex[:8]}"), master_port=_free_port(),
    )
    return plan, model, tokenizer_dir, {"hf_config": hf_config, "tokenizer": identity}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the weights, per worker -----------------------------------------------------------------------


def resize_vocabulary(rows: torch.Tensor, base_vocab: int, added: range, padded_vocab: int) -> torch.Tensor:
    """The embedding (or output layer) with ``padded_vocab`` rows for a tokenizer that adds the ids
    ``added`` to a base tokenizer of ``base_vocab`` tokens.

    Rows of the base tokenizer's tokens are kept. Tokens the extended tokenizer adds, and new padding,
    start at the mean of the base tokens' rows (as HF ``resize_token_embeddings(mean_resizing=True)``
    and the vocabulary-expansion literature do): a new token then looks like an average token, so its
    logit neither dominates nor vanishes at the first steps, and continued training moves it from
    there. Rows the base model has beyond its tokenizer (Qwen3 pads its vocabulary) that the new
    tokenizer does not use are kept as they are.
    """
    mean = rows[:base_vocab].mean(dim=0)
    out = mean.expand(padded_vocab, -1).clone()
    keep = min(rows.shape[0], padded_vocab)
    out[:keep] = rows[:keep]
    out[added.start:added.stop] = mean
    return out


class _Weights:
    """Reads HF tensors lazily from the safetensors files, in float32, the vocabulary resized."""

    def __init__(self, plan: ImportPlan) -> None:
        from safetensors import safe_open

        self.plan = plan
        self.handles = {file: safe_open(file, framework="pt") for file in set(plan.weight_files.values())}

    def __call__(self, name: str) -> torch.Tensor:
        tensor = self.handles[self.plan.weight_files[name]].get_tensor(name).to(torch.float32)
        if name in (HF_EMBEDDING, HF_OUTPUT):
            tensor = resize_vocabulary(tensor, self.plan.base_vocab, range(self.plan.added_from, self.plan.vocab_size),
                                       self.plan.padded_vocab)
        return tensor


def _tp_shard(full: torch.Tensor, param: torch.nn.Parameter, name: str, tp_rank: int, tp: int) -> torch.Tensor:
    """This rank's slice of a TP=1 tensor, as megatron splits the parameter."""
    if tp == 1 or not getattr(param, "tensor_model_parallel", False):
        return full
    dim = param.partition_dim
    if name.endswith("mlp.linear_fc1.weight"):  # [gate; up]: each rank holds [gate_r; up_r]
        return torch.cat([half.chunk(tp, dim=dim)[tp_rank] for half in full.chunk(2, dim=0)])
    return full.chunk(tp, dim=dim)[tp_rank]


def _worker(rank: int, plan: ImportPlan, train_config: dict[str, Any]) -> None:
    from megatron.core import dist_checkpointing, parallel_state, tensor_parallel

    from training import cpu_compat
    from training.model import Runtime, build_model

    config = config_from_dict(train_config)
    cpu_compat.activate()
    runtime = Runtime.detect(config)
    if runtime.cuda:
        torch.cuda.set_device(rank % torch.cuda.device_count())
    torch.distributed.init_process_group("nccl" if runtime.cuda else "gloo", rank=rank,
                                         world_size=plan.tensor * plan.pipeline,
                                         init_method=f"tcp://127.0.0.1:{plan.master_port}")
    parallel_state.initialize_model_parallel(plan.tensor, plan.pipeline)
    tensor_parallel.model_parallel_cuda_manual_seed(config.seed)
    model = build_model(config, runtime, plan.vocab_size)
    layers = {i: layer.layer_number - 1 for i, layer in enumerate(model.decoder.layers)}
    full = hf_to_megatron(_Weights(plan), ModelConfig(**plan.model), layers,
                          parallel_state.is_pipeline_first_stage(), parallel_state.is_pipeline_last_stage())
    params = dict(model.named_parameters())
    full = to_model_names(full, params)
    tp_rank, tp = parallel_state.get_tensor_model_parallel_rank(), plan.tensor
    missing = sorted(set(params) - set(full))
    if missing:
        raise MappingError(f"the mapping gives no weight for megatron parameters {missing[:5]}")
    with torch.no_grad():
        for name, param in params.items():
            shard = _tp_shard(full[name], param, name, tp_rank, tp)
            if shard.shape != param.shape:
                raise MappingError(f"{name}: mapped shard {list(shard.shape)} != parameter {list(param.shape)}")
            param.copy_(shard)
    target = step_dir(Path(plan.out), 0)
    if rank == 0:
        target.mkdir(parents=True, exist_ok=True)
    torch.distributed.barrier()
    state = {"model": model.sharded_state_dict(metadata=SHARDED_METADATA), "step": 0}
    dist_checkpointing.save(state, str(target), content_metadata=SHARDED_METADATA)
    torch.distributed.barrier()
    parallel_state.destroy_model_parallel()
    torch.distributed.destroy_process_group()


# --- the import ------------------------------------------------------------------------------------


def import_train_config(model: ModelConfig, tensor: int, pipeline: int) -> TrainConfig:
    """The training config recorded with the weights (and used to build them): the model, the layout."""
    # The local spec (as in training.hf_export): the name mapping is written against its parameter names.
    return TrainConfig(model=model, precision="fp32", transformer_impl="local",
                       parallel=ParallelConfig(tensor=tensor, pipeline=pipeline),
                       data=DataConfig(blend=NO_BLEND, seq_length=min(model.max_position_embeddings or 2048, 2048)))


def import_hf(hf_dir: str | Path, out: str | Path, tensor: int = 1, pipeline: int = 1,
              tokenizer: str | Path | None = None) -> Path:
    """Write the checkpoint root ``out`` (see the module docstring); returns it."""
    import torch.multiprocessing as mp

    plan, model, tokenizer_dir, info = plan_import(hf_dir, out, tensor, pipeline, tokenizer)
    out, tmp = Path(out), Path(plan.out)
    train_config = config_to_dict(import_train_config(model, tensor, pipeline))
    try:
        mp.start_processes(_worker, args=(plan, train_config), nprocs=tensor * pipeline, join=True,
                           start_method="spawn")
        identity = info["tokenizer"]
        lineage = {"imported_from": str(Path(hf_dir).resolve()),
                   "tokenizer_hash": identity["content_hash"] if identity else None}
        meta = {"step": 0, "consumed_samples": 0, "vocab_size": plan.vocab_size, "weights_only": True,
                "lineage": lineage, "config": train_config, "tokenizer": identity,
                "source": {"architecture": info["hf_config"]["architectures"][0], "vocab_size": plan.source_vocab,
                           "base_tokenizer_vocab": plan.base_vocab}}
        (step_dir(tmp, 0) / META_FILE).write_text(json.dumps(meta, indent=1))
        (tmp / LINEAGE_FILE).write_text(json.dumps({"lineage": lineage, "config": train_config}, indent=1))
        (tmp / TOKENIZER_DIR).mkdir()
        files = os.listdir(tokenizer_dir) if tokenizer is not None else HF_TOKENIZER_FILES
        for name in files:
            if (tokenizer_dir / name).is_file():
                shutil.copy2(tokenizer_dir / name, tmp / TOKENIZER_DIR / name)
        (tmp / LATEST_FILE).write_text("0")
        if out.exists():
            out.rmdir()  # empty (checked in plan_import)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
