"""One-GPU check of the training stage: throughput and MFU of the 1B preset in bf16, a bit-exact resume,
and (when ``training.hf_import`` exists) an HF import -> bf16 steps -> export round trip.

    python benchmarks/gpu_check.py [--out gpu_check.json] [--steps 30] [--dry-run]

Needs only PyTorch (CUDA build), transformers, numpy, pyyaml and megatron-core 0.16.1 (+ psutil, which
megatron's checkpoint writer imports): no Ray, RDKit, pymatgen, gemmi, deltalake or polars. It imports
``training`` (and ``pipeline.options``, standard library only) but never ``pipeline``'s engines or
``workflows``.

Data is synthetic: token ids drawn from a Zipf distribution over the grammar vocabulary, in documents
that repeat a short random motif, so the loss has something to learn (unigram statistics, copying)
and falls within a few steps; it says nothing about the model's quality on real grammar text, only
about the speed and the mechanics. Runs go through ``training.run.train`` exactly as ``logos train``
does (local launcher, one rank).

Phases (each one JSON section of the result):
1. ``throughput``: 1B preset, bf16, Transformer Engine if it imports, else the SDPA path; 30 steps;
   median tokens/s and MFU over the steps after ``--warmup``, peak memory, finite gradient norms,
   falling loss. With TE present, the same run on the SDPA path too (the best figure without TE).
2. ``resume``: 2 layers, 9 steps straight == 6 steps, stop, resume to 9 (bit-exact losses), with
   asynchronous saves.
3. ``hf_roundtrip``: a tiny random transformers Llama imported, trained 20 bf16 steps (when the
   trainer can start from imported weights), exported; Megatron vs transformers logits.

``--dry-run`` (any machine): builds and validates every config, prints the plan, writes nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PEAK_MEMORY_KEY = "max_memory_gib"


# --- configs ------------------------------------------------------------------------------------------

def throughput_overrides(transformer_impl: str, steps: int) -> list[str]:
    """The 1B preset as the example GPU config trains it, on one GPU (8 sequences of 4096 per step)."""
    return ["model.preset=1b", "precision=bf16", f"transformer_impl={transformer_impl}", f"train_steps={steps}",
            "data.seq_length=4096", "data.micro_batch_size=2", "data.global_batch_size=8",
            "optimizer.warmup_steps=5", "optimizer.lr=3e-4", "optimizer.min_lr=3e-5",
            f"checkpoint.interval={10 * steps}", "logging.interval=1", "logging.eval_iters=1"]


RESUME_GPU = ["model.preset=1b", "model.num_layers=2", "precision=bf16", "data.seq_length=1024",
              "checkpoint.async_save=true"]
RESUME_CPU = ["model.preset=tiny", "model.num_layers=2", "precision=fp32", "data.seq_length=64"]  # the CPU test


def resume_overrides(stop_at: int | None, variant: list[str]) -> list[str]:
    base = ["train_steps=9", "data.micro_batch_size=2", "data.global_batch_size=4", "optimizer.warmup_steps=2",
            "checkpoint.interval=3", "logging.eval_iters=1", *variant]
    return base + ([f"stop_at_step={stop_at}"] if stop_at is not None else [])


def build_config(run_dir: Path, blend: Path, overrides: list[str]):
    from training.config import apply_overrides, config_from_dict

    return config_from_dict(apply_overrides({"run_dir": str(run_dir), "data": {"blend": str(blend)}}, overrides))


# --- synthetic data -----------------------------------------------------------------------------------

def write_synthetic_blend(out: Path, tokens: int, seed: int = 0, tokenizer_dir: Path | None = None) -> Path:
    """A one-domain blend of ``tokens`` synthetic token ids (see the module docstring), with the grammar
    tokenizer: loaded from ``tokenizer_dir`` (a saved tokenizer: loading needs only ``tokenizers``), else
    built, which needs RDKit and pymatgen for the vocabulary (a GPU box usually has neither)."""
    import numpy as np
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    from grammar.tokenizer import default_tokenizer, load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir) if tokenizer_dir else default_tokenizer()
    tokenizer.save(out / "tokenizer")
    rng = np.random.default_rng(seed)
    vocab, eod = tokenizer.vocab_size, tokenizer.eod_id
    prefix = list(getattr(tokenizer, "prefix_ids", []) or [])
    splits = {}
    for split, budget in (("train", tokens), ("valid", max(tokens // 50, 20_000))):
        path = out / "megatron" / split / "synthetic"
        path.parent.mkdir(parents=True, exist_ok=True)
        builder = IndexedDatasetBuilder(f"{path}.bin", dtype=np.uint16 if vocab <= 65535 else np.int32)
        written = 0
        while written < budget:
            motif = (rng.zipf(1.2, size=int(rng.integers(8, 64))) % (vocab - 64)) + 64  # past the special ids
            document = [*prefix, *np.tile(motif, int(rng.integers(4, 64))).tolist(), eod]
            builder.add_item(torch.tensor(document, dtype=torch.int64))
            builder.end_document()
            written += len(document)
        builder.finalize(f"{path}.idx")
        splits[split] = {"prefixes": [f"megatron/{split}/synthetic"], "weights": [1.0], "domains": ["synthetic"]}
    blend = {"format": "logos-megatron-blend/1", "dtype": "uint16" if vocab <= 65535 else "int32", "splits": splits,
             "tokenizer": {"path": "tokenizer", "content_hash": tokenizer.content_hash, "vocab_size": vocab,
                           "eod_id": eod, "pad_id": tokenizer.pad_id, "bos_id": tokenizer.bos_id,
                           "kind": getattr(tokenizer, "kind", "native")},
             "dataset": {"name": "synthetic-gpu-check", "version": str(seed)}}
    (out / "blend.json").write_text(json.dumps(blend, indent=1))
    return out / "blend.json"


# --- phases -------------------------------------------------------------------------------------------

def _train(config) -> tuple[Any, list[dict[str, Any]]]:
    from training.metrics import read_metrics
    from training.run import train

    result = train(config)
    return result, read_metrics(result.metrics_path)


def throughput(work: Path, blend: Path, impl: str, steps: int, warmup: int) -> dict[str, Any]:
    config = build_config(work / f"1b_{impl}", blend, throughput_overrides(impl, steps))
    began = time.perf_counter()
    result, records = _train(config)
    shutil.rmtree(config.checkpoint_dir, ignore_errors=True)  # ~17 GB for the 1B model with Adam state
    steady = records[warmup:]
    mfus = [r["mfu"] for r in steady if r.get("mfu") is not None]
    losses = [r["loss"] for r in records]
    norms = [r["grad_norm"] for r in records]
    notes = [json.loads(line)["note"] for line in result.metrics_path.read_text().splitlines()
             if '"kind": "note"' in line]
    return {
        "transformer_impl": impl, "steps": len(records), "wall_s": round(time.perf_counter() - began, 1),
        "tokens_per_step": config.data.global_batch_size * config.data.seq_length,
        "median_tokens_per_s": statistics.median(r["tokens_per_s"] for r in steady),
        "median_step_time_s": statistics.median(r["step_time_s"] for r in steady),
        "median_mfu": statistics.median(mfus) if mfus else None,
        "peak_memory_gib": max((r.get(PEAK_MEMORY_KEY) or 0.0) for r in records),
        "grad_norms_finite": all(n is not None and math.isfinite(n) for n in norms),
        "loss_first": losses[0], "loss_last": losses[-1],
        "loss_falls": losses[-1] < losses[0] - 0.5 and min(losses[-5:]) < min(losses[:5]),
        "notes": notes,
    }


def _losses(records: list[dict[str, Any]]) -> list[float]:
    return [r["loss"] for r in records]


def resume_check(work: Path, blend: Path, variant: list[str]) -> dict[str, Any]:
    """9 straight steps vs 6 steps, a stop, and a resume to 9: the losses must be identical."""
    _, straight_records = _train(build_config(work / "resume_straight", blend, resume_overrides(None, variant)))
    split_dir = work / "resume_split"
    first, _ = _train(build_config(split_dir, blend, resume_overrides(6, variant)))
    second, split_records = _train(build_config(split_dir, blend, resume_overrides(None, variant)))
    a, b = _losses(straight_records), _losses(split_records)
    return {"overrides": variant, "straight_losses": a, "resumed_losses": b, "stopped_at": first.steps,
            "bit_exact": len(a) == len(b) == 9 and a == b, "final_checkpoint": str(second.checkpoint)}


def hf_roundtrip(work: Path, blend: Path) -> dict[str, Any]:
    """Import a tiny random Llama, train it 20 bf16 steps when the trainer can start from imported
    weights, export it, and compare logits (Megatron from the checkpoint vs transformers from the export)."""
    import importlib.util

    if importlib.util.find_spec("training.hf_import") is None:
        return {"skipped": "training/hf_import.py does not exist"}
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from training.config import TrainConfig
    from training.hf_export import export_hf, load_megatron_model
    from training.hf_import import import_hf

    tokenizer_dir = blend.parent / "tokenizer"
    vocab = json.loads(blend.read_text())["tokenizer"]["vocab_size"]
    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                                      num_attention_heads=8, num_key_value_heads=4, head_dim=32,
                                      tie_word_embeddings=True, max_position_embeddings=1024,
                                      rope_theta=500000.0))
    hf_dir = work / "hf_tiny"
    hf.save_pretrained(hf_dir)
    for item in tokenizer_dir.iterdir():  # the model's own tokenizer: the grammar vocabulary
        shutil.copy2(item, hf_dir / item.name)
    imported = import_hf(hf_dir, work / "hf_imported", tokenizer=tokenizer_dir)
    result: dict[str, Any] = {"imported": str(imported)}
    checkpoint = imported
    if hasattr(TrainConfig(), "init"):  # continued pretraining (init.checkpoint): weights at step 0
        meta = json.loads((imported / "lineage.json").read_text())["config"]
        config = build_config(work / "hf_trained", blend, [
            f"model={json.dumps(meta['model'])}", f"precision={'bf16' if torch.cuda.is_available() else 'fp32'}",
            "train_steps=20", "data.seq_length=512",
            "data.micro_batch_size=2", "data.global_batch_size=4", "optimizer.warmup_steps=2",
            f"init.checkpoint={imported}", "logging.eval_iters=1"])
        trained, records = _train(config)
        result["trained_losses"] = _losses(records)
        checkpoint = trained.checkpoint
    else:
        result["trained"] = "skipped: the trainer has no init (weights-only start) yet"
    exported = export_hf(checkpoint, work / "hf_exported")
    ids = torch.randint(0, vocab, (2, 64), generator=torch.Generator().manual_seed(1))
    model, _, vocab_size = load_megatron_model(checkpoint)
    with torch.no_grad():
        device = next(model.parameters()).device
        positions = torch.arange(ids.shape[1]).unsqueeze(0).expand_as(ids)
        megatron = model(input_ids=ids.to(device), position_ids=positions.to(device),
                         attention_mask=None)[..., :vocab_size].float().cpu()
        back = LlamaForCausalLM.from_pretrained(exported, torch_dtype=torch.float32).eval()
        transformers_logits = back(ids).logits.float()
    result["max_abs_logit_diff"] = float((megatron - transformers_logits).abs().max())
    result["logits_match"] = result["max_abs_logit_diff"] < 1e-3
    return result


# --- driver -------------------------------------------------------------------------------------------

def transformer_engine_available() -> tuple[bool, str | None]:
    from training.model import _import_problem

    problem = _import_problem("transformer_engine.pytorch")
    return problem is None, problem


def plan(args: argparse.Namespace, blend: Path, work: Path) -> dict[str, Any]:
    """Every config of the run, built and validated (config errors surface here, before any GPU work)."""
    te, _ = transformer_engine_available()
    impls = ["transformer_engine", "sdpa"] if te else ["sdpa"]
    configs = {f"throughput_{impl}": build_config(work / f"1b_{impl}", blend, throughput_overrides(impl, args.steps))
               for impl in impls}
    configs["resume_straight"] = build_config(work / "resume_straight", blend, resume_overrides(None, RESUME_GPU))
    configs["resume_first"] = build_config(work / "resume_split", blend, resume_overrides(6, RESUME_GPU))
    from training.metrics import training_flops_per_token

    return {name: {"model": c.model.name, "layers": c.model.num_layers, "precision": c.precision,
                   "transformer_impl": c.transformer_impl, "train_steps": c.train_steps,
                   "stop_at_step": c.stop_at_step, "seq_length": c.data.seq_length,
                   "global_batch_size": c.data.global_batch_size,
                   "flops_per_token": training_flops_per_token(c.model, c.data.seq_length, 28_800)}
            for name, c in configs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "gpu_check.json")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the medians")
    parser.add_argument("--tokens", type=int, default=4_000_000, help="synthetic training tokens to write")
    parser.add_argument("--work", type=Path, help="working directory (default: a temporary one)")
    parser.add_argument("--tokenizer", type=Path,
                        help="a saved grammar tokenizer (`logos grammar vocab --out DIR` on any machine with "
                             "the chemistry stack; default: build it here, which needs RDKit and pymatgen)")
    parser.add_argument("--phases", default="throughput,resume,hf_roundtrip",
                        help="comma-separated subset of throughput, resume, hf_roundtrip")
    parser.add_argument("--dry-run", action="store_true", help="validate the configs and print the plan")
    args = parser.parse_args(argv)
    phases_wanted = set(args.phases.split(","))
    if not phases_wanted or phases_wanted - {"throughput", "resume", "hf_roundtrip"}:
        parser.error(f"--phases: unknown phase(s) {sorted(phases_wanted - {'throughput', 'resume', 'hf_roundtrip'})}")
    if args.steps <= args.warmup:
        parser.error(f"--steps ({args.steps}) must exceed --warmup ({args.warmup})")

    import torch

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = args.work or Path(tmp)
        if args.dry_run:
            work.mkdir(parents=True, exist_ok=True)
            (work / "blend.json").write_text("{}")  # configs only need a path; nothing is read
            te, why = transformer_engine_available()
            print(json.dumps({"cuda": torch.cuda.is_available(), "transformer_engine": te or why,
                              "plan": plan(args, work / "blend.json", work), "out": str(args.out)}, indent=1))
            return 0
        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device visible (torch.cuda.is_available() is False); use --dry-run on CPU",
                  file=sys.stderr)
            return 2
        results: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                   "cuda": torch.version.cuda, "data": "synthetic token ids (see the docstring)"}
        try:
            import megatron.core

            results["megatron_core"] = megatron.core.__version__
        except (ImportError, AttributeError):
            results["megatron_core"] = None
        te, why = transformer_engine_available()
        results["transformer_engine"] = True if te else why
        blend = write_synthetic_blend(work / "blend", args.tokens, tokenizer_dir=args.tokenizer)
        phases = [(f"throughput_{impl}", lambda impl=impl: throughput(work, blend, impl, args.steps, args.warmup))
                  for impl in (["transformer_engine", "sdpa"] if te else ["sdpa"])]
        phases += [("resume", lambda: resume_check(work, blend, RESUME_GPU)),
                   ("hf_roundtrip", lambda: hf_roundtrip(work, blend))]
        for name, phase in phases:
            if name.split("_")[0] not in {p.split("_")[0] for p in phases_wanted}:
                continue
            began = time.perf_counter()
            try:
                results[name] = phase()
            except Exception as exc:  # one failed phase must not hide the others' figures
                results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
            results[name]["phase_s"] = round(time.perf_counter() - began, 1)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1))  # after every phase: a timeout keeps what ran
            print(f"# {name}: {json.dumps(results[name])[:600]}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
