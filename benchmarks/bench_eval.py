"""Generation throughput of ``logos eval`` against a plain ``model.generate`` loop, same model, same prompts,
same sampling settings, measured in the same run.

    python benchmarks/bench_eval.py [--model HF_DIR] [--prompts 16] [--samples 2] [--max-new-tokens 32]

The prompts are real retrosynthesis prompts (``<MoleculeS>product<MoleculeE><ReverseReact>``) from the
USPTO-50k rows bundled with the demo. The baseline is what one writes first: one prompt at a time,
``tokenizer(prompt, return_tensors="pt")`` and ``model.generate`` with the same settings. ``logos eval``
batches prompts of similar length with left padding (``training.evaluation.generate``). Without
``--model`` a Llama with the tiny preset's shape (untrained; the same work per token as a trained one,
and no early stops, so both sides generate every token) over the grammar vocabulary is built in memory.
Prints tokens/s of both and the ratio.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def retro_prompts(count: int) -> list[str]:
    from grammar.reaction import Reaction, write_reverse_reaction
    from grammar.tags import REVERSE_REACT

    prompts = []
    with gzip.open(ROOT / "workflows/demo_data/uspto/USPTO_50K_first400.csv.gz", "rt") as handle:
        for row in csv.DictReader(handle):
            text = write_reverse_reaction(Reaction.from_reaction_smiles(row["reactants>reagents>production"]))
            prompts.append(text[: text.index(REVERSE_REACT) + len(REVERSE_REACT)])
            if len(prompts) == count:
                break
    return prompts


def tiny_model(out: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from grammar.tokenizer import default_tokenizer
    from training.presets import model_preset

    tokenizer = default_tokenizer()
    shape = model_preset("tiny")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=shape.hidden_size,
                         intermediate_size=shape.ffn_hidden_size, num_hidden_layers=shape.num_layers,
                         num_attention_heads=shape.num_attention_heads, num_key_value_heads=shape.num_query_groups,
                         max_position_embeddings=1024, pad_token_id=tokenizer.pad_id, bos_token_id=tokenizer.bos_id,
                         eos_token_id=tokenizer.eos_id)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save(out)
    return out


def plain_loop(generator, prompts: list[str], settings) -> tuple[int, float]:
    """One prompt at a time through ``model.generate``, as a first script would do."""
    import torch
    from transformers import set_seed

    model, tokenizer = generator.model, generator.tokenizer
    set_seed(settings.seed)
    tokens, started = 0, time.perf_counter()
    for prompt in prompts:
        ids = torch.tensor([generator.encode_prompt(prompt)])
        with torch.inference_mode():
            output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                    temperature=settings.temperature, top_p=settings.top_p,
                                    repetition_penalty=settings.repetition_penalty,
                                    max_new_tokens=settings.max_new_tokens, num_return_sequences=settings.samples,
                                    eos_token_id=tokenizer.eos_token_id, pad_token_id=generator.pad_id)
        for row in output[:, ids.shape[1]:].tolist():
            tokens += generator.finish([], row, [tokenizer.eos_token_id])[1]
    return tokens, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an HF export (default: an untrained tiny-preset Llama)")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    from training.evaluation.generate import SamplingSettings, TransformersGenerator

    with tempfile.TemporaryDirectory() as scratch:
        model_dir = Path(args.model) if args.model else tiny_model(Path(scratch))
        generator = TransformersGenerator(model_dir)
        prompts = retro_prompts(args.prompts)
        settings = SamplingSettings(samples=args.samples, max_new_tokens=args.max_new_tokens,
                                    batch_size=args.batch_size)
        generator.generate(prompts[:2], None, settings)  # warm-up: first-call allocations on both sides
        baseline_tokens, baseline_seconds = plain_loop(generator, prompts, settings)
        result = generator.generate(prompts, None, settings)
    ours = result.new_tokens / result.seconds
    baseline = baseline_tokens / baseline_seconds
    print(f"prompts {len(prompts)} x {args.samples} samples, max_new_tokens {args.max_new_tokens}, "
          f"batch {args.batch_size}, device {generator.device}")
    print(f"plain model.generate loop: {baseline_tokens} tokens in {baseline_seconds:.2f} s = {baseline:,.0f} tok/s")
    print(f"logos eval generation:     {result.new_tokens} tokens in {result.seconds:.2f} s = {ours:,.0f} tok/s")
    print(f"ratio (logos eval / plain loop): {ours / baseline:.2f}x")


if __name__ == "__main__":
    main()
