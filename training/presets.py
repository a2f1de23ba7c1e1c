"""Model shapes: a tiny Llama for CPU tests and the 1B/3B/8B bases LOGOS continued from.

The large presets copy the published Hugging Face configs of Llama-3.2-1B, Llama-3.2-3B and Qwen3-8B
(layers, widths, heads, RoPE, norms, tying); only the vocabulary differs, since it comes from the
grammar tokenizer. The tiny preset is a Llama-3.2 in miniature (tied embeddings, grouped-query
attention, llama3 RoPE scaling) so that CPU tests exercise the same code paths as the real shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ModelConfig:
    """A Llama-style decoder: RMSNorm, SwiGLU, RoPE, no biases."""

    name: str = "tiny"
    num_layers: int = 4
    hidden_size: int = 64
    ffn_hidden_size: int = 128
    num_attention_heads: int = 4
    num_query_groups: int = 2  # key/value heads (grouped-query attention)
    head_dim: int = 16
    tie_embeddings: bool = True
    qk_layernorm: bool = False  # Qwen3 normalises queries and keys per head
    norm_eps: float = 1e-5
    rope_theta: float = 500_000.0
    # Llama-3 "llama3" RoPE scaling (low/high frequency factors 1 and 4, original context 8192);
    # None turns scaling off.
    rope_scaling_factor: float | None = 32.0
    init_method_std: float = 0.02
    # The base model's context length (HF ``max_position_embeddings``), kept so that an export writes
    # what the base model published; None: the export derives it from the sequence length.
    max_position_embeddings: int | None = None
    # The padded vocabulary must not depend on the tensor-parallel size, or checkpoints could not
    # move between layouts; 128 divides for TP up to 128.
    make_vocab_size_divisible_by: int = 128

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "num_query_groups",
                     "head_dim", "make_vocab_size_divisible_by"):
            if getattr(self, name) <= 0:
                raise ValueError(f"model.{name} must be positive, got {getattr(self, name)}")
        if self.num_attention_heads % self.num_query_groups:
            raise ValueError(f"model.num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                             f"model.num_query_groups ({self.num_query_groups})")

    def padded_vocab_size(self, vocab_size: int) -> int:
        multiple = self.make_vocab_size_divisible_by
        return -(-vocab_size // multiple) * multiple

    def parameter_count(self, vocab_size: int) -> int:
        """Parameters of the model as built (padded vocabulary, all norms)."""
        vocab = self.padded_vocab_size(vocab_size)
        q_dim, kv_dim = self.num_attention_heads * self.head_dim, self.num_query_groups * self.head_dim
        attention = self.hidden_size * (q_dim + 2 * kv_dim) + q_dim * self.hidden_size
        mlp = 3 * self.hidden_size * self.ffn_hidden_size
        norms = 2 * self.hidden_size + (2 * self.head_dim if self.qk_layernorm else 0)
        embeddings = vocab * self.hidden_size * (1 if self.tie_embeddings else 2)
        return self.num_layers * (attention + mlp + norms) + embeddings + self.hidden_size


TINY = ModelConfig()

LLAMA_3_2_1B = ModelConfig(
    name="llama3.2-1b", num_layers=16, hidden_size=2048, ffn_hidden_size=8192, num_attention_heads=32,
    num_query_groups=8, head_dim=64, tie_embeddings=True, norm_eps=1e-5, rope_theta=500_000.0,
    rope_scaling_factor=32.0, max_position_embeddings=131_072,
)
LLAMA_3_2_3B = ModelConfig(
    name="llama3.2-3b", num_layers=28, hidden_size=3072, ffn_hidden_size=8192, num_attention_heads=24,
    num_query_groups=8, head_dim=128, tie_embeddings=True, norm_eps=1e-5, rope_theta=500_000.0,
    rope_scaling_factor=32.0, max_position_embeddings=131_072,
)
QWEN3_8B = ModelConfig(
    name="qwen3-8b", num_layers=36, hidden_size=4096, ffn_hidden_size=12288, num_attention_heads=32,
    num_query_groups=8, head_dim=128, tie_embeddings=False, qk_layernorm=True, norm_eps=1e-6,
    rope_theta=1_000_000.0, rope_scaling_factor=None, max_position_embeddings=40_960,
)

PRESETS: dict[str, ModelConfig] = {
    "tiny": TINY,
    "1b": LLAMA_3_2_1B,
    "3b": LLAMA_3_2_3B,
    "8b": QWEN3_8B,
}
PRESET_ALIASES = {preset.name: key for key, preset in PRESETS.items()}


def model_preset(name: str, **overrides) -> ModelConfig:
    key = PRESET_ALIASES.get(name, name)
    if key not in PRESETS:
        known = sorted({*PRESETS, *PRESET_ALIASES})
        raise ValueError(f"unknown model preset {name!r}; known presets: {', '.join(known)}")
    return replace(PRESETS[key], **overrides)
