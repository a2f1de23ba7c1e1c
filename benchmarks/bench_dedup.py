"""Exact dedup over the MOSES SMILES (1.58M by default): the stage's in-memory and streaming paths
against polars ``unique`` on the key, measured in the same run on the same records.

    python benchmarks/bench_dedup.py [--rows 1584663] [--dup-fraction 0.1]     (quick: --rows 5000)

From a clean clone (no ``../shared``) the input is the bundled ChEMBL SMILES (~5.6k), and the output says so.

Records are full shard rows (``SHARD_SCHEMA``: text, token ids from the grammar tokenizer, metadata)
of the MOSES SMILES as written (key = hash of that SMILES; computing InChIKeys is the ingest's work,
not dedup's). MOSES is already unique, so ``--dup-fraction`` of the rows are repeated as coming from a
second source: those are the duplicates to find. Baselines: ``unique(keep="any")`` (no kept-record
rule) and a key-only sort (the rule's columns and a row index are sorted, ``unique(keep="first")`` picks
the kept row of each key, the rows are then filtered by index): the same deterministic rule as the
stage, doing the same work, since the stage also sorts keys only, never whole rows.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from inputs import MOSES, smiles_rows  # noqa: E402

KEY = ["task", "dedup_key"]
RULE = ["task", "dedup_key", "content_id", "source", "source_id", "source_uri"]


def moses_smiles(rows: int) -> list[str]:
    """MOSES SMILES, or the bundled ones from a clean clone (printed either way)."""
    return smiles_rows(rows)


def key_sort_rule(frame: pl.DataFrame) -> pl.DataFrame:
    """The kept-record rule by sorting the rule's key columns only, then filtering the rows by index."""
    keys = frame.select(RULE).with_row_index("_row")
    kept = keys.sort(RULE).unique(subset=KEY, keep="first", maintain_order=True)["_row"]
    return frame.with_row_index("_row").filter(pl.col("_row").is_in(kept.implode())).drop("_row")


def moses_records(rows: int, dup_fraction: float, tile: int = 1) -> pl.DataFrame:
    """Shard rows for ``rows`` SMILES (repeated ``tile`` times with distinct ids), plus planted duplicates."""
    from grammar.tokenizer import default_tokenizer
    from pipeline.records import SHARD_SCHEMA, dedup_key

    smiles = moses_smiles(rows)
    texts = [f"<MoleculeS>{s}<MoleculeE>" for s in smiles]
    ids = default_tokenizer().encode_batch(texts, engine="python")
    columns = {
        "content_id": [hashlib.sha256(f"molecule\x00{t}".encode()).hexdigest()[:32] for t in texts],
        "source": ["moses"] * len(texts),
        "source_id": [f"moses:{i}" for i in range(len(texts))],
        "domain": ["molecule"] * len(texts),
        "task": ["molecule"] * len(texts),
        "text": pa.array(texts, pa.large_string()),
        "input_ids": pa.array(ids, pa.list_(pa.int32())),
        "n_tokens": pa.array([len(i) for i in ids], pa.int32()),
        "dedup_key": [dedup_key("molecule", s) for s in smiles],
        "metadata": ["{}"] * len(texts),
        "source_uri": [str(MOSES)] * len(texts),
    }
    for name in SHARD_SCHEMA.names:  # columns this benchmark has no value for (e.g. split_group): empty
        if name not in columns:
            kind = SHARD_SCHEMA.field(name).type
            empty = "" if pa.types.is_string(kind) else [] if pa.types.is_list(kind) else None
            columns[name] = pa.array([empty] * len(texts), kind)
    base = pa.table(columns, schema=SHARD_SCHEMA)
    frame = pl.from_arrow(base)
    copies = [frame] + [  # tiles: the same molecules under other keys, to grow the input without new dups
        frame.with_columns(dedup_key=pl.col("dedup_key") + f"#{k}", content_id=pl.col("content_id") + f"{k}")
        for k in range(1, tile)
    ]
    frame = pl.concat(copies)
    planted = frame.sample(fraction=dup_fraction, seed=7).with_columns(
        source=pl.lit("smiles"), source_id=pl.lit("smiles:") + pl.col("source_id")
    )
    return pl.concat([frame, planted]).sample(fraction=1.0, shuffle=True, seed=11)


def write_shards(frame: pl.DataFrame, directory: Path, file_rows: int) -> list[Path]:
    paths = []
    for i, start in enumerate(range(0, frame.height, file_rows)):
        path = directory / f"part-{i:05d}.parquet"
        pq.write_table(frame.slice(start, file_rows).to_arrow(), path)
        paths.append(path)
    return paths


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_584_663)
    parser.add_argument("--dup-fraction", type=float, default=0.1)
    parser.add_argument("--file-rows", type=int, default=200_000)
    args = parser.parse_args()

    from pipeline.dedup import ExactDedupConfig, StreamingConfig, exact_dedup, exact_dedup_files

    records, build_s = timed(moses_records, args.rows, args.dup_fraction)
    print(f"# {records.height:,} records (the SMILES above + {args.dup_fraction:.0%} planted), "
          f"built in {build_s:.1f} s")
    any_kept, any_s = timed(lambda f: f.unique(subset=KEY, keep="any"), records)
    rule_kept, rule_s = timed(key_sort_rule, records)
    stage, stage_s = timed(exact_dedup, ExactDedupConfig(), records)
    with tempfile.TemporaryDirectory(prefix="bench-dedup-") as work:
        paths = write_shards(records, Path(work), args.file_rows)
        streamed, stream_s = timed(exact_dedup_files, ExactDedupConfig(), paths, Path(work) / "out", StreamingConfig())
    assert any_kept.height == rule_kept.height == stage.kept.height == streamed.rows_kept
    assert stage.kept.sort("content_id", "source_id").equals(rule_kept.sort("content_id", "source_id"))
    print(f"# kept {stage.kept.height:,}, duplicates {stage.duplicates.height:,} (all paths agree)")
    print(f"{'path':44} {'seconds':>8} {'rows/s':>12} {'x polars unique':>16}")
    for name, seconds in [
        ("polars unique(keep=any) [baseline]", any_s),
        ("polars key-only sort + unique(first) [rule]", rule_s),
        ("exact_dedup (in memory, + duplicates table)", stage_s),
        ("exact_dedup_files (streaming, 3 passes)", stream_s),
    ]:
        print(f"{name:44} {seconds:8.2f} {records.height / seconds:12,.0f} {seconds / any_s:16.1f}")


if __name__ == "__main__":
    main()
