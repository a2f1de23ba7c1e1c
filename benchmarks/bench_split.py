"""Split throughput: groups from the text (shards written before the group columns) vs from the ``split_group``
and ``chain_sequences`` columns written at ingest, on the same real ingest output, in the same run.

    python benchmarks/bench_split.py [--molecules 10000] [--rounds 2]

Input: molecules from MOSES (``../shared/data/scale``) when present, else the ChEMBL SMILES bundled in
tests/data (the script says which, and when it got fewer than asked); the bundled USPTO-50k sample
(reactions), H. pylori UniProt proteins and the bundled PDB entries (pockets, complexes). Each set goes
through the real ingest path in this process (source read -> convert -> tokenize -> shard rows), then
``assign_splits`` runs on the rows with the columns ("column") and with them dropped ("text"); the two
results are checked identical. Time
is this process's CPU time (all its threads: records/s per core, and robust to other jobs on a shared
machine), best of ``--rounds`` alternating rounds.

Proteins, pockets, complexes: both paths hand the same chains to the same MMseqs2/MinHash clustering, so
these rows time getting the chains only: the grammar's parse of each record's text (old) vs ``group_sources``
(new: the ``chain_sequences`` column, or for plain protein records a vectorized split of the text on
its chain tags).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inputs import ROOT, smiles_rows

DATA = ROOT / "tests/data"
UNIPROT = DATA / "uniprot/uniprotkb_UP000000429_Hpylori26695_proteome_first1100.fasta"
USPTO = DATA / "uspto/USPTO_50K_sample.csv"
PDB_ENTRIES = sorted((DATA / "pdb/mmcif").glob("*.cif"))


def ingest_rows(source_name: str, path: Path, options: dict | None = None) -> tuple[pl.DataFrame, float]:
    """Shard rows of one file through the engine's own convert path (no Ray), and the seconds it took."""
    from grammar.tokenizer import default_tokenizer
    from pipeline.convert import convert_items
    from pipeline.records import SHARD_SCHEMA
    from pipeline.sources import make_source

    source = make_source(source_name, options)
    start = time.perf_counter()
    result = convert_items(source, default_tokenizer(), list(source.read(str(path))))
    seconds = time.perf_counter() - start
    return pl.from_arrow(pa.Table.from_pylist(result.records, schema=SHARD_SCHEMA)), seconds


def best_of(rounds: int, runs: dict[str, Callable[[], object]]) -> dict[str, tuple[float, object]]:
    """Least CPU time of each run over alternating rounds, and its last result."""
    best: dict[str, tuple[float, object]] = {}
    for _ in range(rounds):
        for label, run in runs.items():
            start = time.process_time()
            result = run()
            seconds = time.process_time() - start
            best[label] = (min(seconds, best.get(label, (seconds, None))[0]), result)
    return best


def main() -> None:
    from pipeline.records import SHARD_COLUMN_DEFAULTS
    from pipeline.split import ProteinClusterConfig, SplitConfig, assign_splits, group_sources, record_groups

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecules", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        smiles_file = Path(tmp) / "molecules.smi"
        smiles_file.write_text("\n".join(smiles_rows(args.molecules, "molecules")) + "\n")
        molecules, molecule_s = ingest_rows("smiles", smiles_file)
    reactions, reaction_s = ingest_rows("uspto", USPTO)
    proteins, protein_s = ingest_rows("uniprot", UNIPROT)
    print(f"# ingest (convert + tokenize, one process): {molecules.height:,} molecule records in {molecule_s:.1f} s, "
          f"{reactions.height:,} reaction records in {reaction_s:.1f} s, {proteins.height:,} proteins in "
          f"{protein_s:.1f} s")

    config = SplitConfig(proteins=ProteinClusterConfig(method="minhash"))
    older = list(SHARD_COLUMN_DEFAULTS)
    print(f"\nsplit, one process, best of {args.rounds} alternating rounds: records per CPU second")
    print(f"{'records':34s} {'rows':>8s} {'text (old)':>11s} {'column (new)':>13s} {'new/old':>8s}")
    for label, frame in (("molecules", molecules), ("reactions (react + reverse)", reactions)):
        timed = best_of(args.rounds, {
            "text": lambda frame=frame: assign_splits(config, frame.drop(older)),
            "column": lambda frame=frame: assign_splits(config, frame),
        })
        (old_s, old), (new_s, new) = timed["text"], timed["column"]
        columns = ["content_id", "group", "split"]
        if not old.records.select(columns).sort(columns).equals(new.records.select(columns).sort(columns)):
            raise SystemExit(f"{label}: the two paths disagree")
        print(f"{label:34s} {frame.height:8,d} {frame.height / old_s:11,.0f} {frame.height / new_s:13,.0f} "
              f"{old_s / new_s:7.1f}x")

    pdb = pl.concat([ingest_rows("pdb", path)[0] for path in PDB_ENTRIES])
    pockets = pdb.filter(pl.col("task") != "protein")
    for label, frame in (("proteins (UniProt): chains", proteins), ("pockets + complexes (PDB): chains", pockets)):
        text_columns = frame.select("content_id", "source", "source_id", "task", "text",
                                    fallback=pl.col("content_id")).to_arrow()
        timed = best_of(args.rounds, {"text": lambda t=text_columns: record_groups(t),
                                      "column": lambda f=frame: group_sources(f)[2]})
        (old_s, old), (new_s, new) = timed["text"], timed["column"]
        if old != new:
            raise SystemExit(f"{label}: the chains without parsing differ from those the grammar parses")
        print(f"{label:34s} {frame.height:8,d} {frame.height / old_s:11,.0f} {frame.height / new_s:13,.0f} "
              f"{old_s / new_s:7.1f}x")


if __name__ == "__main__":
    main()
