"""Export a checkpoint as a transformers model (``LlamaForCausalLM``; ``Qwen3ForCausalLM`` for QK-norm
models) plus its tokenizer, loadable with ``AutoModelForCausalLM`` / ``AutoTokenizer``.

The checkpoint is loaded into a single-process TP=1/PP=1 model (``dist_checkpointing`` reshards any
training layout); ``training.hf_mapping`` renames and splits its weights. ``config.json`` carries RoPE
in both spellings (5.x ``rope_parameters``, 4.x ``rope_theta`` + ``rope_scaling``) so both majors load
the same model, and bos/eos/pad ids from the tokenizer (eos = the document end the model was trained
with).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import torch

from training.checkpoint import TOKENIZER_DIR, CheckpointError, find_checkpoint, load_checkpoint
from training.config import ConfigError, TrainConfig, config_from_dict
from training.hf_mapping import megatron_to_hf, rope_keys_for_4x, rope_parameters
from training.presets import ModelConfig


def hf_config(model: ModelConfig, vocab_size: int, max_positions: int, dtype: torch.dtype,
              special_ids: dict[str, int | None]):
    """The transformers config of the exported model; ``special_ids``: bos/eos/pad token ids."""
    from transformers import LlamaConfig, Qwen3Config

    common = dict(
        vocab_size=vocab_size, hidden_size=model.hidden_size, intermediate_size=model.ffn_hidden_size,
        num_hidden_layers=model.num_layers, num_attention_heads=model.num_attention_heads,
        num_key_value_heads=model.num_query_groups, head_dim=model.head_dim, hidden_act="silu",
        max_position_embeddings=max_positions, rms_norm_eps=model.norm_eps, rope_parameters=rope_parameters(model),
        tie_word_embeddings=model.tie_embeddings, attention_bias=False, initializer_range=model.init_method_std,
        dtype=dtype, **special_ids,
    )
    if model.qk_layernorm:
        return Qwen3Config(**common)
    return LlamaConfig(**common, mlp_bias=False)


def tokenizer_special_ids(directory: Path) -> dict[str, int | None]:
    """bos/eos/pad ids of a saved tokenizer; eos is the document end (eod) the model was trained with."""
    from grammar.tokenizer import EXTENSION_META_FILE, VOCAB_META_FILE, load_tokenizer

    if (directory / VOCAB_META_FILE).is_file() or (directory / EXTENSION_META_FILE).is_file():
        tokenizer = load_tokenizer(directory)
        return {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eod_id, "pad_token_id": tokenizer.pad_id}
    # A base model's own tokenizer (``logos import hf`` without --tokenizer): what transformers reads.
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    return {"bos_token_id": auto.bos_token_id, "eos_token_id": auto.eos_token_id, "pad_token_id": auto.pad_token_id}


def _write_rope_keys_for_4x(config_path: Path, model: ModelConfig) -> None:
    """Add transformers 4.x RoPE keys next to 5.x's ``rope_parameters`` so both majors read one RoPE."""
    config = json.loads(config_path.read_text())
    config.update(rope_keys_for_4x(model), rope_parameters=rope_parameters(model))
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _init_single_process(seed: int) -> None:
    from megatron.core import parallel_state, tensor_parallel

    if not torch.distributed.is_initialized():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    if not parallel_state.model_parallel_is_initialized():
        parallel_state.initialize_model_parallel(1, 1)
    tensor_parallel.model_parallel_cuda_manual_seed(seed)  # attention asserts the tracker exists


def load_megatron_model(checkpoint: str | Path) -> tuple[Any, TrainConfig, int]:
    """A checkpoint's model in this process as TP=1/PP=1, float32, eval mode: (model, config, vocab size)."""
    from training import cpu_compat
    from training.model import Runtime, build_model

    ref = find_checkpoint(checkpoint)
    if ref is None:
        raise CheckpointError(f"no checkpoint at {checkpoint}")
    try:
        config = config_from_dict(ref.meta["config"])
    except (KeyError, ConfigError) as exc:
        raise CheckpointError(f"{ref.path}: unreadable training config in its metadata: {exc}") from None
    # megatron's local spec: the HF name mapping is written against its parameter names (Transformer
    # Engine fuses the norms into linear_qkv/linear_fc1 and adds _extra_state); the checkpoint loads
    # into it whichever spec wrote it.
    config = dataclasses.replace(config, precision="fp32", transformer_impl="local",
                                 parallel=dataclasses.replace(config.parallel, tensor=1, pipeline=1, data=1,
                                                              sequence_parallel=False))
    cpu_compat.activate()
    _init_single_process(config.seed)
    vocab_size = int(ref.meta["vocab_size"])
    model = build_model(config, Runtime.detect(config), vocab_size)
    load_checkpoint(ref, model)
    return model.eval(), config, vocab_size


def export_hf(checkpoint: str | Path, out: str | Path, dtype: str = "float32") -> Path:
    """Write ``out`` with config.json, generation_config.json, model.safetensors and the checkpoint's
    tokenizer directory as it is (native grammar, extended base, or the base model's own)."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    ref = find_checkpoint(checkpoint)
    if ref is None:
        raise CheckpointError(f"no checkpoint at {checkpoint}")
    tokenizer_dir = ref.path.parent / TOKENIZER_DIR
    if not tokenizer_dir.is_dir():
        raise CheckpointError(f"{tokenizer_dir} is missing: the checkpoint does not carry its tokenizer")
    special_ids = tokenizer_special_ids(tokenizer_dir)
    model, config, vocab_size = load_megatron_model(ref.path)
    weights = megatron_to_hf(model.state_dict(), config.model, vocab_size)
    # The base model's context length when known (imports keep it); otherwise llama3 RoPE scaling
    # extends an original context of 8192 positions and Llama-3.2 publishes 131072.
    max_positions = config.model.max_position_embeddings or max(
        config.data.seq_length, 131072 if config.model.rope_scaling_factor else 0)
    hf = AutoModelForCausalLM.from_config(hf_config(config.model, vocab_size, max_positions, torch.float32,
                                                    special_ids))
    missing, unexpected = hf.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not (config.model.tie_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise CheckpointError(f"weight names do not match transformers: missing {missing}, unexpected {unexpected}")
    if config.model.tie_embeddings:
        hf.tie_weights()
    hf.generation_config = GenerationConfig(**special_ids)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hf.to(torch_dtype).save_pretrained(out)
    _write_rope_keys_for_4x(out / "config.json", config.model)
    for item in os.listdir(tokenizer_dir):
        shutil.copy2(tokenizer_dir / item, out / item)
    return out
