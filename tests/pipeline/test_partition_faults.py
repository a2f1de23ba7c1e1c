"""A dataset stage's partition whose worker keeps dying (issue 11, "Must show": a clear error or a retry, never
a partial version).

Real worker deaths on a real local Ray: the test hook of ``pipeline.partition_tasks`` ends the worker process
(``os._exit``) on every attempt at split's second partition, as the OOM killer would, while the first
partition's task succeeds and writes its assignments file. Ray retries the partition ``TASK_RETRIES`` times;
then the stage must raise one line naming the stage and the partition, and register nothing. The retry that
succeeds (a worker SIGKILLed once, the result unchanged) is shown on the 3-node cluster
(``tests/workflows/test_cluster_s3.py``). This test takes ~20 s on 2 loaded cores: one local Ray, and a fresh
worker process for each of the four attempts.
"""

from __future__ import annotations

import pytest

from pipeline.datasets import dedup_dataset, split_dataset
from pipeline.partition_tasks import FAULT_DIR_ENV, FAULT_ENV, TASK_RETRIES, PartitionFailed
from pipeline.split import ProteinClusterConfig, SplitConfig, write_partition_assignments
from pipeline.versions import DatasetStore
from workflows.errors import FAILURE, user_error


def test_a_partition_whose_worker_always_dies_is_one_error_and_no_version(shards, tmp_path, monkeypatch):
    store = DatasetStore(tmp_path / "store")
    deduped = dedup_dataset(store, [str(shards.root)], "d", near=None).manifest
    rows = sum(n for by_domain in deduped.counts["records"].values() for n in by_domain.values())
    partition_rows = rows // 2 - 1  # three partitions: the first succeeds, the second dies
    # Set before the stage starts its local Ray: the raylet, and so every worker, inherits it.
    monkeypatch.setenv(FAULT_ENV, f"{write_partition_assignments.__name__}:1:die")
    monkeypatch.setenv(FAULT_DIR_ENV, str(tmp_path))
    config = SplitConfig(proteins=ProteinClusterConfig(method="minhash"), workers=1, partition_rows=partition_rows)
    with pytest.raises(PartitionFailed) as failed:
        split_dataset(store, deduped.ref, "s", config)
    message = str(failed.value)
    assert "\n" not in message and message.startswith("split: partition 1 (")
    assert f"{partition_rows:,} rows" in message and f"failed on {TASK_RETRIES + 1} attempts" in message
    assert "WorkerCrashedError" in message  # Ray's own word for it, not the task's
    assert user_error(failed.value) == (message, FAILURE)  # `logos split` prints it and exits 1
    # Nothing registered: no manifest, no version, no Delta commit of the assignments the first partition wrote.
    assert store.names() == ["d"] and store.versions("s") == []
    folder = tmp_path / "store" / "s" / "tables" / "assignments"
    assert any(folder.glob("*.parquet")) and not (folder / "_delta_log").exists()
