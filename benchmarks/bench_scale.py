"""Dataset stages at scale: records/s per stage in process and on Ray with 1 and 2 workers, driver and worker
peak RSS, and store amplification, on real ingest output of MOSES molecules, with ingest as the baseline.

    nice python benchmarks/bench_scale.py [--molecules 15000 150000 1500000] [--cache DIR] [--rows-per-task N]
        [--stages dedup split mix export] [--repeat N]

Input: MOSES SMILES (``../shared/data/scale``) when present, else the ChEMBL SMILES bundled in tests/data (the
script says so, and that the input is then smaller than asked). Each size goes through the real ingest
(``run_ingest`` on Ray, 2 workers) once and is cached under ``--cache`` (default: the temp folder), so a
rerun measures only the stages. Every stage then runs in a fresh child process (its peak RSS is the driver's
alone) on the previous stage's output:

- dedup: ``exact_dedup_files`` over the ingest shard files (hash buckets; kept files + duplicates);
- split: ``split_files`` over the kept files, partitions of ``--rows-per-task`` rows (row ranges of the files,
  ``pipeline.partitions``), each task reading its own rows (groups from the ``split_group`` column written at
  ingest) and writing its assignments file (content_id, group, split), the driver holding counts only;
- mix: the mixture weights from the split's counts (records and tokens per split and domain), as the mix stage
  reads them from the split version's manifest;
- export: ``export_files``: each task reads its partition's records rows and assignments file and builds the
  documents; the driver appends their bytes to the ``.bin`` files and writes the ``.idx``.

Each stage runs in process ("local"), then on a fresh local Ray with 1 and 2 worker CPUs (Ray's start and its
workers' first imports are outside the timing). CPU time is the driver's plus its Ray workers' during the
stage (``rec/CPU-s``: records per CPU second, the per-core rate other jobs on the machine do not inflate).
Baselines measured in the same run: ingest's records per CPU second (the engine's convert path in this process
on the first ``--ingest-sample`` molecules), and split's old path (groups from the text: the shard columns
dropped, RDKit re-parses each SMILES) on ``--old-split-sample`` of the kept records. Worker peak RSS is the
largest ``VmHWM`` among the Ray worker processes. Store amplification: (kept records + duplicates +
assignments) bytes / ingest shard bytes, the Parquet a dedup and a split version add before any ``.bin``.

Wall-clock rates and the 2-vs-1-worker ratio are honest only on an idle machine: the script prints the load
average before each size and each measurement; ``--repeat`` keeps the fastest of several runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inputs import MOSES, ROOT, smiles_rows

sys.path.insert(0, str(ROOT))
STAGES = ("dedup", "split", "mix", "export")
MODES = ("local", "1", "2")  # in process; Ray with 1 and 2 worker CPUs


# --- child: one stage, one mode ---------------------------------------------------------------------------
def ray_workers() -> dict[int, tuple[float, float]]:
    """This process's Ray worker descendants: pid -> (CPU seconds so far, peak RSS ``VmHWM`` in MB)."""
    import psutil

    found = {}
    for process in psutil.Process().children(recursive=True):
        try:
            if "default_worker" not in " ".join(process.cmdline()) and not process.name().startswith("ray::"):
                continue
            times = process.cpu_times()
            peak = next(int(line.split()[1]) for line in Path(f"/proc/{process.pid}/status").read_text().splitlines()
                        if line.startswith("VmHWM:"))
            found[process.pid] = (times.user + times.system, peak / 1024)
        except (psutil.NoSuchProcess, psutil.AccessDenied, FileNotFoundError, StopIteration):
            continue
    return found


def _warm(driver: bool = False) -> int:
    """Run before the timing, in the driver and once on each worker: the imports a stage needs (megatron-core,
    which imports torch, only in the driver: it writes and reads back the index)."""
    import importlib

    modules = ["grammar.tokenizer", "pipeline.dedup", "pipeline.export_megatron", "pipeline.mix", "pipeline.split"]
    for module in modules + (["megatron.core.datasets.indexed_dataset"] if driver else []):
        importlib.import_module(module)
    return os.getpid()


def run_stage(stage: str, work: Path, workers: int | None, rows_per_task: int) -> int:
    """One stage on the cached inputs in ``work``; returns the records it handled."""
    from fsspec.implementations.local import LocalFileSystem

    from grammar.tokenizer import default_tokenizer
    from pipeline.dedup import ExactDedupConfig, StreamingConfig, exact_dedup_files
    from pipeline.export_megatron import ExportConfig, export_files
    from pipeline.mix import MixConfig, mix
    from pipeline.partitions import as_json, from_json, plan_partitions
    from pipeline.split import SplitConfig, split_files

    shards = sorted((work / "ingest" / "records").glob("*.parquet"))
    kept = [str(p) for p in sorted((work / "dedup").glob("kept-*.parquet"))]
    if stage == "dedup":
        out = work / ("dedup" if workers is None else f"dedup-{workers}")
        stream = StreamingConfig(bucket_rows=rows_per_task)
        return exact_dedup_files(ExactDedupConfig(), shards, out, stream, workers=workers).rows_in
    if stage == "split":
        # The split stage takes the domains from the dedup version's counts: these records are molecules only,
        # so each partition decides alone (one pass of tasks).
        plan = plan_partitions(kept, rows_per_task)
        folder = work / ("assignments" if workers is None else f"assignments-{workers}")
        shutil.rmtree(folder, ignore_errors=True)  # a run with other partitions left other files
        result = split_files(SplitConfig(), plan, LocalFileSystem(), str(folder), "part", workers=workers,
                             domains={"molecule"})
        if workers is None:  # what the split version's manifest records, for mix and export
            partitions = [{"records": rows, "assignments": str(folder / w.file)}
                          for rows, w in zip(as_json(plan, str(work / "dedup")), result.written, strict=True)]
            (work / "split.json").write_text(json.dumps({"counts": result.counts(), "partitions": partitions}))
        return sum(n for domains in result.counts()["records"].values() for n in domains.values())
    split = json.loads((work / "split.json").read_text())
    if stage == "mix":  # the mix stage: token counts from the split's counts, then the weights
        specials = len(default_tokenizer().prefix_ids) + 1
        counts = split["counts"]
        tokens = {s: {d: counts["tokens"][s][d] + specials * n for d, n in by.items()}
                  for s, by in sorted(counts["records"].items())}
        mix(MixConfig(), tokens, counts["records"])
        return sum(n for domains in counts["records"].values() for n in domains.values())
    out = work / ("export" if workers is None else f"export-{workers}")
    weights = {split: {"molecule": 1.0} for split in ("train", "valid", "test")}
    dataset = {"name": "bench", "version": "v"}
    plan = from_json([p["records"] for p in split["partitions"]], str(work / "dedup"))
    partitions = list(zip(plan, [p["assignments"] for p in split["partitions"]], strict=True))
    result = export_files(ExportConfig(), partitions, weights, out, default_tokenizer(), dataset, workers=workers)
    return sum(n for domains in result.documents.values() for n in domains.values())


def child(stage: str, mode: str, work: Path, rows_per_task: int) -> None:
    workers = None if mode == "local" else int(mode)
    _warm(driver=True)
    if workers is None:
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        resident_before = resident()
        wall, cpu = time.perf_counter(), time.process_time()
        rows = run_stage(stage, work, None, rows_per_task)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        worker_rss = 0.0
    else:
        import ray

        from pipeline.ray_runtime import ray_session

        # A fresh local Ray of `workers` CPUs even where another one runs on this machine (the stage joins it).
        ray.init(address="local", num_cpus=workers, include_dashboard=False, object_store_memory=512 * 1024**2,
                 log_to_driver=False)
        with ray_session():
            from pipeline.partition_tasks import TASK_RUNTIME_ENV

            warm = ray.remote(num_cpus=1, runtime_env=TASK_RUNTIME_ENV)(_warm)  # the stages' workers
            ray.get([warm.remote() for _ in range(workers)])
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            resident_before = resident()
            before = ray_workers()
            wall, cpu = time.perf_counter(), time.process_time()
            rows = run_stage(stage, work, workers, rows_per_task)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            after = ray_workers()
            cpu += sum(used - before.get(pid, (0.0, 0.0))[0] for pid, (used, _) in after.items())
            worker_rss = max((peak for _, peak in after.values()), default=0.0)
    driver_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "wall": wall, "cpu": cpu, "driver_rss": driver_rss, "rss_before": rss_before,
                      "worker_rss": worker_rss, "resident": resident(), "resident_before": resident_before}))


def resident() -> dict[str, float]:
    """This process's resident memory now, by kind (MB): anonymous, file pages (mapped files), shared memory
    (Ray's object store pages it touched)."""
    kinds = ("RssAnon", "RssFile", "RssShmem")
    lines = Path("/proc/self/status").read_text().splitlines()
    return {line.split(":")[0]: int(line.split()[1]) / 1024 for line in lines if line.startswith(kinds)}


# --- parent --------------------------------------------------------------------------------------------------
def ensure_ingest(molecules: int, cache: Path) -> tuple[Path, int]:
    """Real ingest output of ``molecules`` SMILES (cached): the folder, and the SMILES actually used."""
    from pipeline.ingest import IngestConfig, run_ingest

    smiles = smiles_rows(molecules, "molecules")
    work = cache / f"{'moses' if MOSES.exists() else 'bundled'}-{len(smiles)}"
    if not (work / "ingest" / "summary.json").exists():
        work.mkdir(parents=True, exist_ok=True)
        source = work / "molecules.smi"
        source.write_text("\n".join(smiles) + "\n")
        started = time.perf_counter()
        run_ingest(IngestConfig("smiles", [str(source)], str(work / "ingest"), workers=2))
        print(f"# ingest of {len(smiles):,} molecules on Ray (2 workers): {time.perf_counter() - started:.0f} s "
              f"(cached in {work})")
    return work, len(smiles)


def ingest_rate(sample: int) -> float:
    """Ingest's records per CPU second: the engine's convert path (read, RDKit, keys, groups, tokenize)."""
    from grammar.tokenizer import default_tokenizer
    from pipeline.convert import convert_items
    from pipeline.sources import make_source

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sample.smi"
        path.write_text("\n".join(smiles_rows(sample, "molecules (ingest baseline)")) + "\n")
        source = make_source("smiles")
        items = list(source.read(str(path)))
        start = time.process_time()
        result = convert_items(source, default_tokenizer(), items)
        return len(result.records) / (time.process_time() - start)


def old_split_rate(work: Path, sample: int) -> float:
    """Split's records per CPU second from the text (the path before the ``split_group`` column)."""
    import polars as pl

    from pipeline.records import SHARD_COLUMN_DEFAULTS
    from pipeline.split import SplitConfig, assign_splits

    records = pl.read_parquet(sorted((work / "dedup").glob("kept-*.parquet"))).head(sample)
    start = time.process_time()
    assign_splits(SplitConfig(), records.drop(list(SHARD_COLUMN_DEFAULTS)))
    return records.height / (time.process_time() - start)


def measure(stage: str, mode: str, work: Path, rows_per_task: int) -> dict:
    command = [sys.executable, __file__, "--child", stage, mode, str(work), str(rows_per_task)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{stage} ({mode}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def store_amplification(work: Path) -> str:
    """What a dedup and a split version add, over the ingest shard bytes, whole and by table."""
    ingest = sum(p.stat().st_size for p in (work / "ingest" / "records").glob("*.parquet"))
    tables = {"kept records": sum(p.stat().st_size for p in (work / "dedup").glob("kept-*.parquet")),
              "duplicates": (work / "dedup" / "duplicates.parquet").stat().st_size,
              "assignments": sum(p.stat().st_size for p in (work / "assignments").glob("*.parquet"))}
    parts = ", ".join(f"{name} {size / ingest:.2f}x" for name, size in tables.items())
    return f"{sum(tables.values()) / ingest:.2f}x ({parts}; ingest shards {ingest / 1e6:.1f} MB)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecules", type=int, nargs="+", default=[15_000, 150_000])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "logos-bench-scale")
    parser.add_argument("--ingest-sample", type=int, default=5_000)
    parser.add_argument("--old-split-sample", type=int, default=5_000)
    parser.add_argument("--rows-per-task", type=int, default=250_000,
                        help="dedup bucket, split partition and export partition rows (results do not depend on it)")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                        help="stages to measure (split reads the kept files of an earlier dedup run, mix and export "
                             "the split of an earlier split run, both cached)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per stage and mode; the fastest (wall) is shown, the highest driver RSS kept")
    parser.add_argument("--child", nargs=4, metavar=("STAGE", "MODE", "WORK", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        stage, mode, work, rows_per_task = args.child
        child(stage, mode, Path(work), int(rows_per_task))
        return

    print(f"# {os.cpu_count()} CPUs on this machine; load average before the runs: {os.getloadavg()[0]:.1f}; "
          f"{args.rows_per_task:,} rows per dedup bucket, split and export partition")
    ingest = ingest_rate(args.ingest_sample)
    print(f"# baseline, ingest in process: {ingest:,.0f} records per CPU second")
    runs: dict[int, dict[str, dict[str, dict]]] = {}
    for molecules in args.molecules:
        work, size = ensure_ingest(molecules, args.cache)
        print(f"\n## {size:,} molecules (load average {os.getloadavg()[0]:.1f})")
        print(f"{'stage':7} {'mode':6} {'records':>10} {'wall s':>7} {'rec/s':>9} {'rec/CPU-s':>10} "
              f"{'vs ingest':>9} {'driver MB':>10} {'(start)':>8} {'worker MB':>10} {'load':>5}")
        runs[size] = {}
        for stage in (s for s in STAGES if s in args.stages):
            missing = {"split": "dedup/kept-*.parquet", "mix": "split.json", "export": "split.json"}.get(stage)
            if missing and not list(work.glob(missing)):
                raise SystemExit(f"{stage}: {work / missing} not found: measure the stage before it first")
            runs[size][stage] = {}
            for mode in MODES if stage != "mix" else ("local",):
                load = os.getloadavg()[0]
                tries = [measure(stage, mode, work, args.rows_per_task) for _ in range(args.repeat)]
                r = min(tries, key=lambda t: t["wall"]) | {"driver_rss": max(t["driver_rss"] for t in tries)}
                runs[size][stage][mode] = r
                per_cpu = r["rows"] / r["cpu"]
                print(f"{stage:7} {mode:6} {r['rows']:10,d} {r['wall']:7.2f} {r['rows'] / r['wall']:9,.0f} "
                      f"{per_cpu:10,.0f} {per_cpu / ingest:8.1f}x {r['driver_rss']:10,.0f} {r['rss_before']:8,.0f} "
                      f"{r['worker_rss']:10,.0f} {load:5.1f}")
        if "split" in runs[size]:
            old = old_split_rate(work, args.old_split_sample)
            new = runs[size]["split"]["local"]
            print(f"split from the text (old path, {args.old_split_sample:,} records): {old:,.0f} records per CPU "
                  f"second; from the column: {new['rows'] / new['cpu']:,.0f} ({new['rows'] / new['cpu'] / old:.1f}x)")
        for stage in (s for s in ("dedup", "split", "export") if s in runs[size]):
            one, two = runs[size][stage]["1"], runs[size][stage]["2"]
            print(f"{stage}: 2 workers / 1 worker, wall: {one['wall'] / two['wall']:.2f}x")
        if (work / "assignments").is_dir():
            print(f"store amplification (dedup + split Parquet / ingest shards): {store_amplification(work)}")
    sizes = sorted(runs)
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        print(f"\n## driver peak RSS, {large:,} / {small:,} records ({large / small:.0f}x the input)")
        for stage in (s for s in STAGES if s in runs[small] and s in runs[large]):
            for mode in runs[small][stage]:
                a, b = runs[small][stage][mode], runs[large][stage][mode]
                grown = (b["driver_rss"] - b["rss_before"]) / max(a["driver_rss"] - a["rss_before"], 1.0)
                print(f"{stage:7} {mode:6} {a['driver_rss']:8,.0f} MB -> {b['driver_rss']:8,.0f} MB: "
                      f"{b['driver_rss'] / a['driver_rss']:.2f}x; above the start (imports, Ray): "
                      f"{a['driver_rss'] - a['rss_before']:6,.0f} -> {b['driver_rss'] - b['rss_before']:6,.0f} MB"
                      f" ({grown:.1f}x)")
        print(f"\n## driver resident memory at the end minus at the start, {large:,} records (MB)")
        for stage in (s for s in STAGES if s in runs[large]):
            for mode, r in runs[large][stage].items():
                grown = {k: v - r["resident_before"].get(k, 0.0) for k, v in r["resident"].items()}
                print(f"{stage:7} {mode:6} anonymous {grown.get('RssAnon', 0):+6.0f}, file pages "
                      f"{grown.get('RssFile', 0):+6.0f}, shared (object store) {grown.get('RssShmem', 0):+6.0f}")


if __name__ == "__main__":
    main()
