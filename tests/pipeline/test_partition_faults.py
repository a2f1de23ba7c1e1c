"""Dataset-stage partitions whose worker dies (issue 11, "Must show": a clear error or a retry, never a partial
version).

Real worker deaths on a real local Ray, made deterministic by the test hook of ``pipeline.partition_tasks``
(a partition of the test data takes milliseconds: a kill timed by a sleep would be a race):

- ``die``: the worker process ends (``os._exit``) on every attempt at one partition, as the OOM killer would:
  split's second assignments partition (while the first one's task succeeds and writes its file) and streaming
  dedup's first kept-records file. After ``TASK_RETRIES`` retries the stage must raise one line naming the
  stage and the partition, and register nothing.
- ``hold``: export's first partition blocks until this test SIGKILLs its worker, found by its Ray title
  ``ray::export_partition``; Ray retries it, and ``logos export megatron`` must register the in-process
  export's version with the same file bytes, its stdout still the one JSON report.

The same kill mid-stage on the 3-node cluster with an S3 home is in ``tests/workflows/test_cluster_s3.py``.
One local Ray serves every stage here (each would otherwise start its own); the module takes ~25 s on 2 loaded
cores, most of it the fresh worker process each of the nine attempts needs.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pipeline.datasets import dedup_dataset, export_megatron_dataset, split_dataset
from pipeline.dedup import StreamingConfig, write_kept_file
from pipeline.export_megatron import export_partition
from pipeline.partition_tasks import FAULT_DIR_ENV, FAULT_ENV, TASK_RETRIES, PartitionFailed
from pipeline.ray_runtime import ray_session
from pipeline.split import ProteinClusterConfig, SplitConfig, write_partition_assignments
from pipeline.versions import DatasetStore
from workflows.cli import main
from workflows.errors import FAILURE, user_error

MINHASH = SplitConfig(proteins=ProteinClusterConfig(method="minhash"))
FAULTS = {write_partition_assignments.__name__: (1, "die"), write_kept_file.__name__: (0, "die"),
          export_partition.__name__: (0, "hold")}


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A local Ray whose workers carry the fault hook (set before it starts: the raylet, and so every worker,
    inherits it); the folder where held partitions leave their marker."""
    folder = tmp_path_factory.mktemp("held")
    hook = {FAULT_ENV: ",".join(f"{name}:{index}:{action}" for name, (index, action) in FAULTS.items()),
            FAULT_DIR_ENV: str(folder)}
    saved = {key: os.environ.get(key) for key in hook}
    os.environ.update(hook)
    try:
        with ray_session(num_cpus=1):
            yield folder
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def assert_one_line(error: PartitionFailed, start: str) -> str:
    message = str(error)
    assert "\n" not in message and message.startswith(start), message
    assert f"failed on {TASK_RETRIES + 1} attempts" in message and "WorkerCrashedError" in message  # Ray's word
    assert user_error(error) == (message, FAILURE)  # `logos split|dedup` print it and exit 1
    return message


def test_a_partition_whose_worker_always_dies_is_one_error_and_no_version(shards, markers, tmp_path):
    store = DatasetStore(tmp_path / "store")
    deduped = dedup_dataset(store, [str(shards.root)], "d", near=None).manifest  # in process: no hook there
    rows = sum(n for by_domain in deduped.counts["records"].values() for n in by_domain.values())
    partition_rows = rows // 2 - 1  # three partitions: the first succeeds, the second dies
    config = SplitConfig(proteins=MINHASH.proteins, workers=1, partition_rows=partition_rows)
    with pytest.raises(PartitionFailed) as split_failed:
        split_dataset(store, deduped.ref, "s", config)
    with pytest.raises(PartitionFailed) as dedup_failed:
        dedup_dataset(store, [str(shards.root)], "streamed", near=None, streaming=StreamingConfig(workers=1))
    message = assert_one_line(split_failed.value, "split: partition 1 (")
    assert f"{partition_rows:,} rows" in message
    first_file = sorted((shards.root / "records").glob("*.parquet"))[0].name  # the inputs, in the order read
    assert_one_line(dedup_failed.value, f"dedup: partition 0 ({first_file})")
    # Nothing registered: no manifest, no version, no Delta commit of the assignments the first partition wrote.
    assert store.names() == ["d"] and store.versions("s") == [] and store.versions("streamed") == []
    folder = tmp_path / "store" / "s" / "tables" / "assignments"
    assert any(folder.glob("*.parquet")) and not (folder / "_delta_log").exists()


def kill_held(marker: Path, function: str, killed: list[str]) -> None:
    """SIGKILL the worker holding ``marker``'s partition, once it is there; it must be titled ray::<function>."""
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not marker.exists():
        return
    pid = int(marker.read_text())
    titled = {p.pid for p in psutil.Process().children(recursive=True)
              if (p.cmdline() or [""])[0].split(" ")[0] == f"ray::{function}"}
    if pid in titled:
        os.kill(pid, signal.SIGKILL)
        killed.append(function)


def test_a_partition_whose_worker_is_killed_is_retried_with_the_same_bytes(shards, markers, tmp_path, capsys):
    store = DatasetStore(tmp_path / "store")
    deduped = dedup_dataset(store, [str(shards.root)], "d", near=None).manifest
    split = split_dataset(store, deduped.ref, "d", MINHASH).manifest  # in process
    reference = export_megatron_dataset(store, split.ref, "reference").manifest  # in process
    capsys.readouterr()
    function, killed = export_partition.__name__, []
    killer = threading.Thread(target=kill_held, args=(markers / f"{function}-0.held", function, killed))
    killer.start()
    try:
        code = main(["export", "megatron", split.ref, "--name", "e", "--workers", "1", "--store", str(store.root)])
    finally:
        killer.join()
    out = capsys.readouterr().out
    assert killed == [function], "the held export partition's worker was not found by its title and killed"
    assert code == 0
    report = json.loads(out)  # stdout is the report alone (Ray prints the worker's death to stdout otherwise)
    assert report["state"] == "registered" and report["dataset"] == f"e@{reference.version}"
    # The same .bin/.idx and tokenizer bytes (the blend differs only in the dataset name it records).
    made, same = store.manifest(report["dataset"]), by_file(reference.files)
    assert any(p.endswith(".bin") for p in same) and by_file(made.files) == same


def by_file(files: dict[str, str]) -> dict[str, str]:
    """A manifest's file digests by their path inside the version's folder, the blend left out."""
    inside = {path.split("/files/", 1)[1].split("/", 1)[1]: digest for path, digest in files.items()}
    return {path: digest for path, digest in inside.items() if path != "blend.json"}
