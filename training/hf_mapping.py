"""One mapping between megatron-core ``GPTModel`` weights (TP=1 names) and transformers
``LlamaForCausalLM`` / ``Qwen3ForCausalLM``, used in both directions: ``training.hf_export`` (Megatron
-> HF) and ``training.hf_import`` (HF -> Megatron). The model shape maps too: ``config.json`` <->
``ModelConfig``.

NVIDIA's Megatron-Bridge does this conversion, but it needs Transformer-Engine/CUDA builds that a
CPU box (CI, laptops) does not have, so the mapping is written here. What it has to know:

- Megatron's fused QKV weight holds, per query group, that group's query heads, then one key head and
  one value head: ``[groups, heads/groups + 2, head_dim, hidden]``.
- The fused SwiGLU ``linear_fc1`` weight is ``[gate; up]``.
- Qwen3's per-head QK-norm is megatron's ``q_layernorm`` / ``k_layernorm``.
- Tied models have no output layer in either library; untied ones map ``output_layer`` <-> ``lm_head``.
- The local layer spec names the pre-attention and pre-MLP norms ``input_layernorm`` and
  ``pre_mlp_layernorm``; the Transformer-Engine spec fuses them into the next linear layer
  (``linear_qkv.layer_norm_weight``, ``linear_fc1.layer_norm_weight``). Both spellings are accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from training.errors import TrainingError
from training.presets import ModelConfig

# HF architecture -> whether it normalises queries and keys per head (the one shape difference).
ARCHITECTURES = {"LlamaForCausalLM": False, "Qwen3ForCausalLM": True}
HF_EMBEDDING = "model.embed_tokens.weight"
HF_OUTPUT = "lm_head.weight"
# megatron-core 0.16 applies llama3 RoPE scaling with these fixed values (RotaryEmbedding._apply_scaling
# defaults; GPTModel passes only the factor), so a config with other values cannot be represented.
MEGATRON_LLAMA3_ROPE = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
# Local-spec norm name -> Transformer-Engine-spec name of the same weight.
TE_NORM_NAMES = {
    "input_layernorm.weight": "self_attention.linear_qkv.layer_norm_weight",
    "pre_mlp_layernorm.weight": "mlp.linear_fc1.layer_norm_weight",
}


class MappingError(TrainingError, ValueError):
    """A config or weight set that the mapping cannot represent (the message names the key)."""


# --- weights: Megatron -> HF ------------------------------------------------------------------------


def _get(state: Mapping[str, torch.Tensor], prefix: str, name: str) -> torch.Tensor:
    for key in (name, TE_NORM_NAMES.get(name, name)):
        if prefix + key in state:
            return state[prefix + key]
    raise MappingError(f"weight {prefix}{name} not found in the model state")


def megatron_to_hf(state: Mapping[str, torch.Tensor], model: ModelConfig, vocab_size: int) -> dict[str, torch.Tensor]:
    """Megatron TP=1 ``GPTModel`` weights -> transformers Llama/Qwen3 names (vocabulary padding removed)."""
    heads, groups, d, hidden = model.num_attention_heads, model.num_query_groups, model.head_dim, model.hidden_size
    per_group = heads // groups
    out = {HF_EMBEDDING: state["embedding.word_embeddings.weight"][:vocab_size],
           "model.norm.weight": state["decoder.final_layernorm.weight"]}
    if not model.tie_embeddings:
        out[HF_OUTPUT] = state["output_layer.weight"][:vocab_size]
    for i in range(model.num_layers):
        src, dst = f"decoder.layers.{i}.", f"model.layers.{i}."
        qkv = _get(state, src, "self_attention.linear_qkv.weight").view(groups, per_group + 2, d, hidden)
        out[dst + "self_attn.q_proj.weight"] = qkv[:, :per_group].reshape(heads * d, hidden)
        out[dst + "self_attn.k_proj.weight"] = qkv[:, per_group].reshape(groups * d, hidden)
        out[dst + "self_attn.v_proj.weight"] = qkv[:, per_group + 1].reshape(groups * d, hidden)
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


# --- weights: HF -> Megatron ------------------------------------------------------------------------


def hf_layer_to_megatron(get: Callable[[str], torch.Tensor], index: int, model: ModelConfig) -> dict[str, torch.Tensor]:
    """One decoder layer's HF weights (``get(name)``) -> Megatron local-spec names relative to the layer."""
    heads, groups, d, hidden = model.num_attention_heads, model.num_query_groups, model.head_dim, model.hidden_size
    per_group = heads // groups
    src = f"model.layers.{index}."
    q = get(src + "self_attn.q_proj.weight").reshape(groups, per_group, d, hidden)
    k = get(src + "self_attn.k_proj.weight").reshape(groups, 1, d, hidden)
    v = get(src + "self_attn.v_proj.weight").reshape(groups, 1, d, hidden)
    out = {
        "self_attention.linear_qkv.weight": torch.cat([q, k, v], dim=1).reshape((heads + 2 * groups) * d, hidden),
        "self_attention.linear_proj.weight": get(src + "self_attn.o_proj.weight"),
        "mlp.linear_fc1.weight": torch.cat([get(src + "mlp.gate_proj.weight"), get(src + "mlp.up_proj.weight")]),
        "mlp.linear_fc2.weight": get(src + "mlp.down_proj.weight"),
        "input_layernorm.weight": get(src + "input_layernorm.weight"),
        "pre_mlp_layernorm.weight": get(src + "post_attention_layernorm.weight"),
    }
    if model.qk_layernorm:
        out["self_attention.q_layernorm.weight"] = get(src + "self_attn.q_norm.weight")
        out["self_attention.k_layernorm.weight"] = get(src + "self_attn.k_norm.weight")
    return out


def hf_to_megatron(get: Callable[[str], torch.Tensor], model: ModelConfig, layers: Mapping[int, int],
                   first_stage: bool, last_stage: bool) -> dict[str, torch.Tensor]:
    """The TP=1 Megatron state of one pipeline stage. ``layers`` maps the stage's local layer numbers to
    HF layer numbers; the embedding lives on the first stage, the final norm and the output layer on
    the last (a tied model's last stage holds a copy of the embedding as its output layer)."""
    out: dict[str, torch.Tensor] = {}
    if first_stage:
        out["embedding.word_embeddings.weight"] = get(HF_EMBEDDING)
    for local, index in layers.items():
        for name, tensor in hf_layer_to_megatron(get, index, model).items():
            out[f"decoder.layers.{local}.{name}"] = tensor
    if last_stage:
        out["decoder.final_layernorm.weight"] = get("model.norm.weight")
        out["output_layer.weight"] = get(HF_EMBEDDING if model.tie_embeddings else HF_OUTPUT)
    return out


def to_model_names(state: Mapping[str, torch.Tensor], model_keys: Iterable[str]) -> dict[str, torch.Tensor]:
    """Rename local-spec norm names to the Transformer-Engine spelling where the model uses it."""
    keys = set(model_keys)
    out = {}
    for name, tensor in state.items():
        if name not in keys:
            for local, te in TE_NORM_NAMES.items():
                if name.endswith("." + local) and name[: -len(local)] + te in keys:
                    name = name[: -len(local)] + te
        out[name] = tensor
    return out


# --- the model shape: config.json <-> ModelConfig ---------------------------------------------------


def _rope_from_hf(config: Mapping[str, Any], where: str) -> tuple[float, float | None]:
    """(rope_theta, llama3 factor or None) from either spelling: 5.x ``rope_parameters`` or 4.x
    ``rope_theta`` + ``rope_scaling``."""
    if isinstance(config.get("rope_parameters"), dict):
        rope, key = dict(config["rope_parameters"]), "rope_parameters"
        theta = rope.get("rope_theta", config.get("rope_theta"))
    else:
        rope, key = dict(config.get("rope_scaling") or {}), "rope_scaling"
        theta = config.get("rope_theta")
    if theta is None:
        raise MappingError(f"{where}: rope_theta is missing")
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind == "default":
        return float(theta), None
    if kind != "llama3":
        raise MappingError(f"{where}: {key}.rope_type {kind!r} is not supported (default or llama3)")
    for name, expected in MEGATRON_LLAMA3_ROPE.items():
        if float(rope.get(name, float("nan"))) != expected:
            raise MappingError(f"{where}: {key}.{name} is {rope.get(name)!r}; megatron-core's llama3 RoPE "
                               f"scaling is fixed at {expected}")
    if "factor" not in rope:
        raise MappingError(f"{where}: {key}.factor is missing")
    return float(theta), float(rope["factor"])


def model_config_from_hf(config: Mapping[str, Any], where: str, name: str = "imported") -> ModelConfig:
    """The ``ModelConfig`` of a transformers Llama/Qwen3 ``config.json`` (``where`` names the file)."""
    architectures = config.get("architectures") or []
    if len(architectures) != 1 or architectures[0] not in ARCHITECTURES:
        raise MappingError(f"{where}: architectures {architectures} is not supported "
                           f"(expected one of {', '.join(ARCHITECTURES)})")
    qk_layernorm = ARCHITECTURES[architectures[0]]
    for key, allowed in (("hidden_act", ("silu",)), ("attention_bias", (False, None)), ("mlp_bias", (False, None)),
                         ("use_sliding_window", (False, None))):
        if config.get(key) not in allowed:
            raise MappingError(f"{where}: {key} = {config.get(key)!r} is not supported (expected {allowed[0]!r})")
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
        if not isinstance(config.get(key), int):
            raise MappingError(f"{where}: {key} is missing or not an integer")
    heads = config["num_attention_heads"]
    theta, factor = _rope_from_hf(config, where)
    try:
        return ModelConfig(
            name=name,
            num_layers=config["num_hidden_layers"],
            hidden_size=config["hidden_size"],
            ffn_hidden_size=config["intermediate_size"],
            num_attention_heads=heads,
            num_query_groups=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or config["hidden_size"] // heads,
            # LlamaConfig and Qwen3Config default to untied when the key is absent.
            tie_embeddings=bool(config.get("tie_word_embeddings", False)),
            qk_layernorm=qk_layernorm,
            norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            rope_theta=theta,
            rope_scaling_factor=factor,
            init_method_std=float(config.get("initializer_range", 0.02)),
            max_position_embeddings=config.get("max_position_embeddings"),
        )
    except ValueError as exc:
        raise MappingError(f"{where}: {exc}") from None


def hf_architecture(model: ModelConfig) -> str:
    return "Qwen3ForCausalLM" if model.qk_layernorm else "LlamaForCausalLM"


def rope_parameters(model: ModelConfig) -> dict[str, Any]:
    """transformers 5.x ``rope_parameters`` (includes ``rope_theta``)."""
    if model.rope_scaling_factor is None:
        return {"rope_type": "default", "rope_theta": model.rope_theta}
    return {"rope_type": "llama3", "rope_theta": model.rope_theta, "factor": model.rope_scaling_factor,
            **MEGATRON_LLAMA3_ROPE}


def rope_keys_for_4x(model: ModelConfig) -> dict[str, Any]:
    """The same RoPE in transformers 4.x keys: ``rope_theta`` and ``rope_scaling`` (None when unscaled).
    4.x ignores ``rope_parameters`` and would silently fall back to theta 10000 without these."""
    scaling = None
    if model.rope_scaling_factor is not None:
        scaling = {"rope_type": "llama3", "factor": model.rope_scaling_factor, **MEGATRON_LLAMA3_ROPE}
    return {"rope_theta": model.rope_theta, "rope_scaling": scaling}
