"""Grammar text -> token ids: tokens/s per core of the Rust (HF tokenizers) path against a pure-Python
regex baseline, measured in the same run on the same texts.

    python benchmarks/bench_tokenizer.py [--rows 200000] [--smiles PATH] [--tokenizer DIR]

Texts: real SMILES (MOSES, ../shared/data/scale) wrapped as molecule records, plus real protein and
pocket records from the test fixtures. "Per core" means the Rust batch encoder is pinned to one thread
(RAYON_NUM_THREADS=1, set before tokenizers is imported); a second line shows the all-cores batch rate.
``--tokenizer DIR`` adds the same measurement for a saved tokenizer of either kind (e.g. an extended
one from ``logos grammar vocab --extend``), with its tokens per record next to the native vocabulary's.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SMILES = ROOT.parent / "shared/data/scale/moses_train_smiles.csv.gz"


def load_texts(smiles_path: Path, rows: int) -> list[str]:
    from grammar.molecule import Molecule, write_molecule

    texts = []
    if smiles_path.exists():
        with gzip.open(smiles_path, "rt") as handle:
            reader = csv.reader(handle)
            next(reader)
            for i, row in enumerate(reader):
                if i >= rows:
                    break
                texts.append(f"<MoleculeS>{row[0]}<MoleculeE>")
    else:  # a clean clone: the bundled ChEMBL SMILES, and the output says the input is smaller
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from inputs import bundled_smiles

        bundled = bundled_smiles()[:rows]
        smaller = "smaller input: " if len(bundled) < rows else ""
        print(f"# {smaller}{smiles_path} not found; {len(bundled):,} bundled ChEMBL SMILES ({rows:,} asked for)")
        texts += [write_molecule(Molecule.from_smiles(s)) for s in bundled]
    sys.path.insert(0, str(ROOT))
    from tests.grammar.corpus import grammar_corpus

    proteins = [t for t in grammar_corpus() if t.startswith("<ProteinS>")]
    return texts + proteins * max(1, len(texts) // (20 * max(1, len(proteins))))


def measure(threads: int, rows: int, smiles: Path, saved: str | None = None) -> None:
    from grammar.tokenizer import default_tokenizer

    tokenizer = default_tokenizer()
    texts = load_texts(smiles, rows)
    start = time.perf_counter()
    python_ids = tokenizer.encode_batch(texts, engine="python")
    python_s = time.perf_counter() - start
    n_tokens = sum(map(len, python_ids))
    start = time.perf_counter()
    rust_ids = tokenizer.encode_batch(texts, engine="rust")
    rust_s = time.perf_counter() - start
    assert rust_ids == python_ids, "the two engines disagree"
    print(f"records={len(texts)} tokens={n_tokens}  rust[{threads} thread(s)]={n_tokens / rust_s:,.0f} tok/s  "
          f"python-regex[1 core]={n_tokens / python_s:,.0f} tok/s  rust/python={python_s / rust_s:.2f}x  "
          f"tokens/record={n_tokens / len(texts):.1f}")
    if saved:
        from grammar.tokenizer import load_tokenizer

        other = load_tokenizer(saved)
        start = time.perf_counter()
        other_ids = other.encode_batch(texts)
        other_s = time.perf_counter() - start
        other_tokens = sum(map(len, other_ids))
        print(f"  {other.kind} tokenizer {saved} (vocab {other.vocab_size}): rust[{threads} thread(s)]="
              f"{other_tokens / other_s:,.0f} tok/s  tokens/record={other_tokens / len(texts):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--smiles", type=Path, default=DEFAULT_SMILES)
    parser.add_argument("--tokenizer", help="also measure this saved tokenizer directory (native or extended)")
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        measure(args.threads, args.rows, args.smiles, args.tokenizer)
        return
    for threads in (1, os.cpu_count() or 1):
        env = os.environ | {"RAYON_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "true"}
        cmd = [sys.executable, __file__, "--rows", str(args.rows), "--smiles", str(args.smiles)]
        cmd += ["--threads", str(threads)] + (["--tokenizer", args.tokenizer] if args.tokenizer else [])
        subprocess.run(cmd, env=env, check=True)


if __name__ == "__main__":
    main()
