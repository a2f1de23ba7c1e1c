"""A random-weight Hugging Face Llama-3.2 in a preset's shape, for benchmarking continued pretraining
where the real weights cannot be downloaded (GPU boxes without network):

    python benchmarks/make_hf_model.py 1b /tmp/llama3.2-1b-random
    python benchmarks/bench_training.py --init-hf /tmp/llama3.2-1b-random

The model is a ``LlamaForCausalLM`` with the preset's published shape (``training.presets``: layers,
widths, heads, llama3 RoPE, tied embeddings, 131072 positions) and Llama-3's vocabulary size: the
tokenizer is the small Llama-3-style BPE of the tests (``tests/grammar/base_tokenizers.py``) with the
reserved special tokens filling it up to 128,256 ids, so embedding and output layer have the real
size. Throughput does not depend on the weights' values; loss values do, so only tokens/s and MFU
of such a run mean anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LLAMA3_VOCAB = 128_256
LLAMA_PRESETS = ("tiny", "1b", "3b")


def make_llama(preset: str, out: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(ROOT))
    from tests.grammar.base_tokenizers import LLAMA3_RESERVED, llama3_special_tokens, make_base_tokenizer
    from training.hf_mapping import rope_parameters
    from training.presets import model_preset

    model = model_preset(preset)
    # Learn the BPE's size once, then fill up to Llama-3's 128,256 ids with reserved specials.
    make_base_tokenizer("llama3", out)
    bpe = len(AutoTokenizer.from_pretrained(out)) - len(llama3_special_tokens(LLAMA3_RESERVED))
    make_base_tokenizer("llama3", out, reserved=LLAMA3_VOCAB - bpe - len(llama3_special_tokens(0)))
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert len(tokenizer) == LLAMA3_VOCAB, len(tokenizer)
    config = LlamaConfig(
        vocab_size=LLAMA3_VOCAB, hidden_size=model.hidden_size, intermediate_size=model.ffn_hidden_size,
        num_hidden_layers=model.num_layers, num_attention_heads=model.num_attention_heads,
        num_key_value_heads=model.num_query_groups, head_dim=model.head_dim, hidden_act="silu",
        max_position_embeddings=model.max_position_embeddings or 131_072, rms_norm_eps=model.norm_eps,
        rope_parameters=rope_parameters(model), tie_word_embeddings=model.tie_embeddings, attention_bias=False,
        mlp_bias=False, initializer_range=model.init_method_std,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|begin_of_text|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|end_of_text|>"),
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(out)  # bf16, as Llama-3.2 ships
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", choices=LLAMA_PRESETS)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    print(make_llama(args.preset, args.out))


if __name__ == "__main__":
    main()
