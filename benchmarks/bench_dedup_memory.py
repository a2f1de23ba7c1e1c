"""Peak memory of exact dedup when the input grows 10x: the streaming path against the in-memory path
(and the bare imports), each in a fresh child process, measured in the same run.

    python benchmarks/bench_dedup_memory.py [--rows 158466] [--file-rows 100000]

Inputs are shard files of MOSES SMILES records (see bench_dedup.py, 10% planted duplicates) with
``--rows`` and 10x ``--rows`` SMILES, in files of ``--file-rows`` rows (as the ingest engine writes
bounded parts). Peak RSS is the child's ``VmHWM`` (``/proc/self/status``, read at its end: unlike
``ru_maxrss`` it does not carry the parent's size over the fork). The streaming path keeps one
batch and one hash bucket in memory; the number of buckets grows with the input (``--bucket-rows``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
MODES = ("imports only", "in-memory exact_dedup", "streaming exact_dedup_files")


def child(mode: str, inputs: Path, out: Path, batch_rows: int, bucket_rows: int) -> None:
    import polars as pl

    from pipeline.dedup import ExactDedupConfig, StreamingConfig, exact_dedup, exact_dedup_files

    paths = sorted(inputs.glob("*.parquet"))
    if mode == MODES[1]:
        result = exact_dedup(ExactDedupConfig(), pl.read_parquet(paths))
        result.kept.write_parquet(out / "kept.parquet")
        result.duplicates.write_parquet(out / "duplicates.parquet")
    elif mode == MODES[2]:
        exact_dedup_files(ExactDedupConfig(), paths, out, StreamingConfig(batch_rows, bucket_rows))
    status = Path("/proc/self/status").read_text()
    print(next(line for line in status.splitlines() if line.startswith("VmHWM:")))


def peak_rss_mb(mode: str, inputs: Path, args: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-dedup-out-") as out:
        command = [sys.executable, __file__, "--child", mode, str(inputs), out,
                   "--batch-rows", str(args.batch_rows), "--bucket-rows", str(args.bucket_rows)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"{mode} on {inputs} failed ({done.returncode}): {done.stderr[-2000:]}")
    line = next(line for line in done.stdout.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024  # kB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=158_466)
    parser.add_argument("--file-rows", type=int, default=100_000)
    parser.add_argument("--batch-rows", type=int, default=50_000)
    parser.add_argument("--bucket-rows", type=int, default=200_000)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "INPUTS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, inputs, out = args.child
        child(mode, Path(inputs), Path(out), args.batch_rows, args.bucket_rows)
        return

    from bench_dedup import moses_records, write_shards

    with tempfile.TemporaryDirectory(prefix="bench-dedup-mem-") as work:
        sizes = {}
        for label, rows in (("N", args.rows), ("10N", 10 * args.rows)):
            directory = Path(work) / label
            directory.mkdir()
            records = moses_records(rows, 0.1)
            sizes[label] = (records.height, directory)
            write_shards(records, directory, args.file_rows)
            del records
        n_rows, ten_rows = sizes["N"][0], sizes["10N"][0]
        print(f"# N = {n_rows:,} records, 10N = {ten_rows:,} records, files of {args.file_rows:,} rows; "
              f"streaming batch {args.batch_rows:,}, bucket {args.bucket_rows:,} rows")
        print(f"{'path':30} {'peak MB at N':>13} {'peak MB at 10N':>15} {'10N / N':>8}")
        for mode in MODES:
            small, large = (peak_rss_mb(mode, sizes[label][1], args) for label in ("N", "10N"))
            print(f"{mode:30} {small:13.0f} {large:15.0f} {large / small:8.2f}")


if __name__ == "__main__":
    main()
