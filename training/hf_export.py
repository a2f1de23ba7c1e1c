"""Export a checkpoint as a transformers model (``LlamaForCausalLM``; ``Qwen3ForCausalLM`` for QK-norm
models) plus the grammar tokenizer, loadable with ``AutoModelForCausalLM`` / ``AutoTokenizer``.

The checkpoint is loaded into a single-process TP=1/PP=1 model (``dist_checkpointing`` reshards any
training layout), and its weights are renamed and split: megatron's fused QKV holds, per query group,
that group's query heads then one key and one value head; the fused SwiGLU ``fc1`` is [gate; up].
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import torch

from training.checkpoint import TOKENIZER_DIR, CheckpointError, find_checkpoint, load_checkpoint
from training.config import ConfigError, TrainConfig, config_from_dict
from training.presets import ModelConfig

# Local-spec and Transformer-Engine-spec names of the same norm weights.
_NORM_ALIASES = {
    "input_layernorm.weight": "self_attention.linear_qkv.layer_norm_weight",
    "pre_mlp_layernorm.weight": "mlp.linear_fc1.layer_norm_weight",
}


def _get(state: dict[str, torch.Tensor], prefix: str, name: str) -> torch.Tensor:
    for key in (name, _NORM_ALIASES.get(name, name)):
        if prefix + key in state:
            return state[prefix + key]
    raise CheckpointError(f"weight {prefix}{name} not found in the model state")


def hf_state_dict(state: dict[str, torch.Tensor], model: ModelConfig, vocab_size: int) -> dict[str, torch.Tensor]:
    """Megatron TP=1 ``GPTModel`` weights -> transformers Llama/Qwen3 names (vocabulary padding removed)."""
    heads, groups, d = model.num_attention_heads, model.num_query_groups, model.head_dim
    per_group = heads // groups
    out = {"model.embed_tokens.weight": state["embedding.word_embeddings.weight"][:vocab_size],
           "model.norm.weight": state["decoder.final_layernorm.weight"]}
    if not model.tie_embeddings:
        out["lm_head.weight"] = state["output_layer.weight"][:vocab_size]
    for i in range(model.num_layers):
        src, dst = f"decoder.layers.{i}.", f"model.layers.{i}."
        qkv = _get(state, src, "self_attention.linear_qkv.weight").view(groups, per_group + 2, d, model.hidden_size)
        out[dst + "self_attn.q_proj.weight"] = qkv[:, :per_group].reshape(heads * d, model.hidden_size)
        out[dst + "self_attn.k_proj.weight"] = qkv[:, per_group].reshape(groups * d, model.hidden_size)
        out[dst + "self_attn.v_proj.weight"] = qkv[:, per_group + 1].reshape(groups * d, model.hidden_size)
        out[dst + "self_attn.o_proj.weight"] = _get(state, src, "self_attention.linear_proj.weight")
        if model.qk_layernorm:
            out[dst + "self_attn.q_norm.weight"] = _get(state, src, "self_attention.q_layernorm.weight")
            out[dst + "self_attn.k_norm.weight"] = _get(state, src, "self_attention.k_layernorm.weight")
        gate, up = _get(state, src, "mlp.linear_fc1.weight").chunk(2, dim=0)
        out[dst + "mlp.gate_proj.weight"] = gate
        out[dst + "mlp.up_proj.weight"] = up
        out[dst + "mlp.down_proj.weight"] = _get(state, src, "mlp.linear_fc2.weight")
        out[dst + "input_layernorm.weight"] = _get(state, src, "input_layernorm.weight")
        out[dst + "post_attention_layernorm.weight"] = _get(state, src, "pre_mlp_layernorm.weight")
    return {k: v.detach().to("cpu").contiguous() for k, v in out.items()}


def hf_config(model: ModelConfig, vocab_size: int, max_positions: int, dtype: torch.dtype):
    from transformers import LlamaConfig, Qwen3Config

    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": model.rope_theta}
    if model.rope_scaling_factor is not None:
        # megatron-core applies Llama-3.1 scaling with these fixed factors and original context.
        rope = {"rope_type": "llama3", "rope_theta": model.rope_theta, "factor": model.rope_scaling_factor,
                "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    common = dict(
        vocab_size=vocab_size, hidden_size=model.hidden_size, intermediate_size=model.ffn_hidden_size,
        num_hidden_layers=model.num_layers, num_attention_heads=model.num_attention_heads,
        num_key_value_heads=model.num_query_groups, head_dim=model.head_dim, hidden_act="silu",
        max_position_embeddings=max_positions, rms_norm_eps=model.norm_eps, rope_parameters=rope,
        tie_word_embeddings=model.tie_embeddings, attention_bias=False, initializer_range=model.init_method_std,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, dtype=dtype,
    )
    if model.qk_layernorm:
        return Qwen3Config(**common)
    return LlamaConfig(**common, mlp_bias=False)


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
    config = dataclasses.replace(config, precision="fp32",
                                 parallel=dataclasses.replace(config.parallel, tensor=1, pipeline=1, data=1,
                                                              sequence_parallel=False))
    cpu_compat.activate()
    _init_single_process(config.seed)
    vocab_size = int(ref.meta["vocab_size"])
    model = build_model(config, Runtime.detect(config), vocab_size)
    load_checkpoint(ref, model)
    return model.eval(), config, vocab_size


def export_hf(checkpoint: str | Path, out: str | Path, dtype: str = "float32") -> Path:
    """Write ``out`` with config.json, model.safetensors and the grammar tokenizer files."""
    from transformers import AutoModelForCausalLM

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    ref = find_checkpoint(checkpoint)
    if ref is None:
        raise CheckpointError(f"no checkpoint at {checkpoint}")
    tokenizer_dir = ref.path.parent / TOKENIZER_DIR
    if not tokenizer_dir.is_dir():
        raise CheckpointError(f"{tokenizer_dir} is missing: the checkpoint does not carry its tokenizer")
    model, config, vocab_size = load_megatron_model(ref.path)
    weights = hf_state_dict(model.state_dict(), config.model, vocab_size)
    # llama3 RoPE scaling extends an original context of 8192 positions; Llama-3.2 publishes 131072.
    max_positions = max(config.data.seq_length, 131072 if config.model.rope_scaling_factor else 0)
    hf = AutoModelForCausalLM.from_config(hf_config(config.model, vocab_size, max_positions, torch.float32))
    missing, unexpected = hf.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not (config.model.tie_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise CheckpointError(f"weight names do not match transformers: missing {missing}, unexpected {unexpected}")
    if config.model.tie_embeddings:
        hf.tie_weights()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hf.to(torch_dtype).save_pretrained(out)
    for item in os.listdir(tokenizer_dir):
        shutil.copy2(tokenizer_dir / item, out / item)
    return out
