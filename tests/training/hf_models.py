"""Tiny random transformers models in the two base architectures LOGOS continues, saved locally.

- ``llama``: ``LlamaForCausalLM`` shaped like Llama-3.2 in miniature (grouped-query attention, llama3
  RoPE scaling with Llama-3.2's published values, tied embeddings, 131072 positions) with the small
  Llama-3-style base tokenizer of ``tests/grammar/base_tokenizers.py``; the embedding has exactly the
  tokenizer's rows, as Llama-3 has.
- ``qwen3``: ``Qwen3ForCausalLM`` (QK-norm, untied output layer, theta 1e6, 40960 positions) with the
  Qwen3-style tokenizer; the embedding has more rows than the tokenizer has tokens, as Qwen3's has.

Every weight, norms included, is drawn at a scale where the logits differ clearly between tokens and
positions, so comparisons between implementations are informative.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.grammar.base_tokenizers import make_base_tokenizer

SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, attention_bias=False, hidden_act="silu", initializer_range=0.02)
# Llama-3.2-1B/3B publish exactly this rope configuration.
LLAMA32_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
QWEN3_EXTRA_ROWS = 50  # Qwen3-8B: 151,936 embedding rows for 151,669 tokens


def _randomize(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 1:  # norm weights around 1, not exactly 1
                param.copy_(1.0 + 0.2 * torch.randn(param.shape, generator=generator))
            else:
                param.copy_(0.15 * torch.randn(param.shape, generator=generator))


def make_hf_model(kind: str, out: str | Path, seed: int = 0, max_shard_size: str | None = None) -> Path:
    """Write a tiny ``kind`` ("llama" or "qwen3") model directory with its base tokenizer; returns it.
    ``max_shard_size`` (e.g. "100KB") writes sharded safetensors with an index, as large models ship."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    out = Path(out)
    make_base_tokenizer("llama3" if kind == "llama" else "qwen3", out)
    tokens = len(AutoTokenizer.from_pretrained(out))
    torch.manual_seed(seed)
    if kind == "llama":
        config = LlamaConfig(**SHAPE, vocab_size=tokens, tie_word_embeddings=True, rope_parameters=LLAMA32_ROPE,
                             max_position_embeddings=131072, rms_norm_eps=1e-5, mlp_bias=False,
                             bos_token_id=tokens - 256, eos_token_id=tokens - 255)
        model = LlamaForCausalLM(config)
    elif kind == "qwen3":
        config = Qwen3Config(**SHAPE, vocab_size=tokens + QWEN3_EXTRA_ROWS, tie_word_embeddings=False,
                             rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
                             max_position_embeddings=40960, rms_norm_eps=1e-6)
        model = Qwen3ForCausalLM(config)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    _randomize(model, seed)
    if config.tie_word_embeddings:
        model.tie_weights()
    model.save_pretrained(out, **({"max_shard_size": max_shard_size} if max_shard_size else {}))
    return out


def hf_logits(directory: Path, ids: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(ids).logits
