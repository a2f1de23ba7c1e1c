"""A dataset stage's partition whose worker keeps dying (issue 11, "Must show": a clear error or a retry, never
a partial version).

Real worker deaths on a real local Ray: the test hook of ``pipeline.partition_tasks`` ends the worker process
(``os._exit``) on every attempt at one partition, as the OOM killer would: split's second assignments partition
(while the first partition's task succeeds and writes its file) and streaming dedup's first kept-records file.
Ray retries the partition ``TASK_RETRIES`` times; then the stage must raise one line naming the stage and the
partition, and register nothing. The retry that succeeds (a worker SIGKILLed once, the result unchanged) is
shown on the 3-node cluster (``tests/workflows/test_cluster_s3.py``). This test takes ~15 s on 2 loaded
cores: one local Ray for both stages, and a fresh worker process for each of the eight attempts.
"""

from __future__ import annotations

import pytest

from pipeline.datasets import dedup_dataset, split_dataset
from pipeline.dedup import StreamingConfig, write_kept_file
from pipeline.partition_tasks import FAULT_DIR_ENV, FAULT_ENV, TASK_RETRIES, PartitionFailed
from pipeline.ray_runtime import ray_session
from pipeline.split import ProteinClusterConfig, SplitConfig, write_partition_assignments
from pipeline.versions import DatasetStore
from workflows.errors import FAILURE, user_error


def assert_one_line(error: PartitionFailed, start: str) -> str:
    message = str(error)
    assert "\n" not in message and message.startswith(start), message
    assert f"failed on {TASK_RETRIES + 1} attempts" in message and "WorkerCrashedError" in message  # Ray's word
    assert user_error(error) == (message, FAILURE)  # `logos split|dedup` print it and exit 1
    return message


def test_a_partition_whose_worker_always_dies_is_one_error_and_no_version(shards, tmp_path, monkeypatch):
    store = DatasetStore(tmp_path / "store")
    deduped = dedup_dataset(store, [str(shards.root)], "d", near=None).manifest  # in process: no hook there
    rows = sum(n for by_domain in deduped.counts["records"].values() for n in by_domain.values())
    partition_rows = rows // 2 - 1  # three partitions: the first succeeds, the second dies
    # Set before Ray starts: the raylet, and so every worker, inherits it.
    monkeypatch.setenv(FAULT_ENV, f"{write_partition_assignments.__name__}:1:die,{write_kept_file.__name__}:0:die")
    monkeypatch.setenv(FAULT_DIR_ENV, str(tmp_path))
    config = SplitConfig(proteins=ProteinClusterConfig(method="minhash"), workers=1, partition_rows=partition_rows)
    with ray_session(num_cpus=1):  # one local Ray for both stages (each would otherwise start its own)
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
