"""Training throughput: tokens/s (and MFU on GPUs) of the Megatron-Core stage on real grammar text.

    python benchmarks/bench_training.py [--steps 30] [--rows 20000] [--out result.json] [--init-hf HF_DIR]

Data: MOSES SMILES (../shared/data/scale) written as molecule records, tokenized with the grammar
tokenizer into a one-domain Megatron blend (the test fixtures when the scale file is absent).

Without CUDA: the tiny preset with TP=1 (one process) against TP=2 (two processes) on this machine,
both launched exactly as ``logos train`` does; the ratio is TP=2 over TP=1 from the same run.
With CUDA: the 1B preset (Llama-3.2-1B shape), bf16, on the visible GPUs, with tokens/s and MFU
(dense bf16 peak of the device, causal attention FLOPs).

With ``--init-hf HF_DIR`` (a local Llama/Qwen3 model): continued pretraining instead, LOGOS's recipe.
The data is tokenized with the model's tokenizer extended by the grammar, the model (its shape from
``config.json``) starts from the imported weights (``init: {hf: ...}``; the import is timed on its
own), TP=1 fp32 on CPU, bf16 data-parallel over the visible GPUs with CUDA.

Steady-state numbers: the median over the steps after the first ``--warmup`` steps.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SMILES = ROOT.parent / "shared/data/scale/moses_train_smiles.csv.gz"


def molecule_texts(path: Path, rows: int) -> list[str]:
    from grammar.molecule import Molecule, write_molecule

    if not path.exists():  # a clean clone: the bundled ChEMBL SMILES, and the output says the input is smaller
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from inputs import bundled_smiles

        bundled = bundled_smiles()[:rows]
        if len(bundled) < rows:
            print(f"# smaller input: {path} not found; {len(bundled):,} bundled ChEMBL SMILES, not {rows:,}")
        return [write_molecule(Molecule.from_smiles(s)) for s in bundled]
    with gzip.open(path, "rt") as handle:
        reader = csv.reader(handle)
        next(reader)
        return [write_molecule(Molecule.from_smiles(row[0])) for _, row in zip(range(rows), reader, strict=False)]


def write_blend(out: Path, texts: list[str], tokenizer=None) -> Path:
    """A one-domain blend in the dataset stage's format (train and valid from disjoint documents);
    ``tokenizer``: any kind (default: the native grammar tokenizer)."""
    import numpy as np
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    from grammar.tokenizer import default_tokenizer
    from pipeline.export_megatron import blend_tokenizer

    tokenizer = tokenizer or default_tokenizer()
    dtype = np.uint16 if tokenizer.vocab_size <= 65535 else np.int32  # as the Megatron export chooses
    tokenizer.save(out / "tokenizer")
    documents = tokenizer.encode_batch(texts)
    cut = max(1, len(documents) // 20)
    splits = {}
    for split, part in (("valid", documents[:cut]), ("train", documents[cut:])):
        prefix = out / "megatron" / split / "molecule"
        prefix.parent.mkdir(parents=True, exist_ok=True)
        builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=dtype)
        for ids in part:
            builder.add_item(torch.tensor([*tokenizer.prefix_ids, *ids, tokenizer.eod_id]))  # as the export writes
            builder.end_document()
        builder.finalize(f"{prefix}.idx")
        splits[split] = {"prefixes": [f"megatron/{split}/molecule"], "weights": [1.0], "domains": ["molecule"]}
    blend = {"format": "logos-megatron-blend/1", "dtype": np.dtype(dtype).name, "splits": splits,
             "tokenizer": blend_tokenizer(tokenizer),
             "dataset": {"name": "moses-bench", "version": str(len(texts))}}
    (out / "blend.json").write_text(json.dumps(blend))
    return out / "blend.json"


def run(run_dir: Path, blend: Path, steps: int, warmup: int, overrides: list[str]) -> dict:
    from training.config import apply_overrides, config_from_dict
    from training.metrics import read_metrics
    from training.run import train

    data = {"run_dir": str(run_dir), "train_steps": steps, "data": {"blend": str(blend)},
            "checkpoint": {"interval": 10 * steps}, "logging": {"eval_iters": 1},
            "optimizer": {"warmup_steps": max(1, steps // 10)}}
    config = config_from_dict(apply_overrides(data, overrides))
    result = train(config)
    records = read_metrics(result.metrics_path)[warmup:]
    mfus = [r["mfu"] for r in records if r["mfu"] is not None]
    return {
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in records),
        "step_time_s": statistics.median(r["step_time_s"] for r in records),
        "mfu": statistics.median(mfus) if mfus else None,
        "loss_first": read_metrics(result.metrics_path)[0]["loss"], "loss_last": result.final_loss,
        "world_size": config.parallel.world_size, "tokens_per_step": config.data.global_batch_size
        * config.data.seq_length,
    }


def continue_hf(tmp: Path, hf_dir: Path, texts: list[str], steps: int, warmup: int) -> tuple[str, dict]:
    """Continued pretraining from ``hf_dir``: (result name, result) with the import time added."""
    import dataclasses
    import time

    import torch

    from grammar.hf_extend import ExtendedTokenizer
    from training.hf_import import import_hf
    from training.hf_mapping import model_config_from_hf

    blend = write_blend(tmp / "blend_extended", texts, ExtendedTokenizer.build(hf_dir))
    model = model_config_from_hf(json.loads((hf_dir / "config.json").read_text()), str(hf_dir / "config.json"),
                                 name=hf_dir.name)
    overrides = [f"model.{k}={json.dumps(v)}" for k, v in dataclasses.asdict(model).items()]
    overrides.append(f"init.hf={hf_dir}")
    began = time.perf_counter()
    import_hf(hf_dir, tmp / "continue" / "init", tokenizer=blend.parent / "tokenizer")  # what init.hf does
    import_s = time.perf_counter() - began
    if torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        name = "continue_bf16"
        overrides += ["precision=bf16", f"parallel.data={gpus}", "data.seq_length=4096", "data.micro_batch_size=2",
                      f"data.global_batch_size={8 * gpus}"]
    else:
        name = "continue_tp1"
        overrides += ["precision=fp32", "data.seq_length=256", "data.micro_batch_size=4", "data.global_batch_size=8"]
    result = run(tmp / "continue", blend, steps, warmup, overrides)
    return name, result | {"import_s": import_s, "vocab_size": json.loads(blend.read_text())["tokenizer"]["vocab_size"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the medians")
    parser.add_argument("--rows", type=int, default=20_000, help="MOSES molecules to tokenize")
    parser.add_argument("--smiles", type=Path, default=DEFAULT_SMILES)
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--init-hf", type=Path, metavar="HF_DIR",
                        help="benchmark continued pretraining from this local Llama/Qwen3 model instead")
    args = parser.parse_args()

    import torch

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        texts = molecule_texts(args.smiles, args.rows)
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        if args.init_hf:
            name, results[name] = continue_hf(Path(tmp), args.init_hf.resolve(), texts, args.steps, args.warmup)
        elif torch.cuda.is_available():
            blend = write_blend(Path(tmp) / "blend", texts)
            gpus = torch.cuda.device_count()
            results["1b_bf16"] = run(Path(tmp) / "1b", blend, args.steps, args.warmup, [
                "model.preset=1b", "precision=bf16", f"parallel.data={gpus}", "data.seq_length=4096",
                "data.micro_batch_size=2", f"data.global_batch_size={8 * gpus}"])
        else:
            blend = write_blend(Path(tmp) / "blend", texts)
            common = ["model.preset=tiny", "precision=fp32", "data.seq_length=256", "data.micro_batch_size=4",
                      "data.global_batch_size=8"]
            results["tiny_tp1"] = run(Path(tmp) / "tp1", blend, args.steps, args.warmup, common)
            results["tiny_tp2"] = run(Path(tmp) / "tp2", blend, args.steps, args.warmup,
                                      [*common, "parallel.tensor=2"])
    print(f"# device: {device}")
    for name, r in results.items():
        mfu = f"  MFU {100 * r['mfu']:.1f}%" if r["mfu"] is not None else ""
        print(f"{name:10s} {r['tokens_per_s']:>12,.0f} tokens/s  {r['step_time_s'] * 1e3:8.1f} ms/step  "
              f"({r['world_size']} rank(s), {r['tokens_per_step']} tokens/step){mfu}  "
              f"loss {r['loss_first']:.2f} -> {r['loss_last']:.2f}"
              + (f"  (import {r['import_s']:.1f} s, vocabulary {r['vocab_size']})" if "import_s" in r else ""))
    if "tiny_tp1" in results:
        ratio = results["tiny_tp2"]["tokens_per_s"] / results["tiny_tp1"]["tokens_per_s"]
        print(f"TP=2 / TP=1 tokens/s: {ratio:.2f}x")
    if args.out:
        args.out.write_text(json.dumps({"device": device, **results}, indent=1))


if __name__ == "__main__":
    main()
