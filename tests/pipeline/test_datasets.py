"""Versioned datasets: reuse, new versions, time travel, lineage, diff, and a run killed mid-way."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import deltalake
import polars as pl
import pytest

from grammar.tokenizer import default_tokenizer
from pipeline.datasets import (
    InputError,
    dedup_dataset,
    diff,
    export_megatron_dataset,
    mix_dataset,
    split_dataset,
)
from pipeline.dedup import ExactDedupConfig, StreamingConfig, exact_dedup
from pipeline.mix import MixConfig
from pipeline.near_dedup import NearDedupConfig
from pipeline.split import ProteinClusterConfig, SplitConfig, SplitError, assign_splits
from pipeline.versions import DatasetStore
from pipeline.versions.store import PAUSE_ENV

SPLIT = SplitConfig(proteins=ProteinClusterConfig(method="minhash"))


@pytest.fixture
def store(tmp_path) -> DatasetStore:
    return DatasetStore(tmp_path / "store")


def delta_version(store: DatasetStore, name: str, table: str = "records") -> int:
    return deltalake.DeltaTable(str(store.root / name / "tables" / table)).version()


def test_same_inputs_and_config_reuse_the_version(store, shards):
    first = dedup_dataset(store, [str(shards.root)], "demo")
    written = delta_version(store, "demo")
    again = dedup_dataset(store, [str(shards.root)], "demo")
    assert again.reused and not first.reused
    assert again.manifest.version == first.manifest.version
    assert delta_version(store, "demo") == written  # nothing rewritten
    # Execution-only settings do not change the result, so they do not change the version either.
    batched = dedup_dataset(store, [str(shards.root)], "demo", near=NearDedupConfig(batch_rows=7))
    assert batched.reused and batched.manifest.version == first.manifest.version
    assert [m.version for m in store.versions("demo")] == [first.manifest.version]


def test_a_config_change_is_a_new_version_and_time_travel_reads_the_old_one(store, shards):
    exact_only = dedup_dataset(store, [str(shards.root)], "demo", near=None).manifest
    with_near = dedup_dataset(store, [str(shards.root)], "demo").manifest
    assert exact_only.version != with_near.version
    assert [m.version for m in store.versions("demo")] == [exact_only.version, with_near.version]
    # The older version reads back as it was: the exact-dedup result computed here directly.
    old = store.read(store.manifest(f"demo@{exact_only.version[:6]}"))
    expected = exact_dedup(ExactDedupConfig(), shards.records).kept
    key = ["content_id", "source", "source_id"]
    assert old.sort(key).select(expected.columns).equals(expected.sort(key))
    latest = pl.read_delta(str(store.root / "demo" / "tables" / "records"))
    assert latest.height == store.read(store.manifest("demo")).height == old.height - 2  # two mutants dropped


def test_changed_inputs_make_a_new_version(store, shards, tmp_path):
    copy = tmp_path / "ingest"
    shutil.copytree(shards.root, copy)
    first = dedup_dataset(store, [str(copy)], "demo", near=None).manifest
    (copy / "records" / "proteins.parquet").unlink()
    second = dedup_dataset(store, [str(copy)], "demo", near=None).manifest
    assert first.inputs[0].checksum != second.inputs[0].checksum
    assert "protein" in first.counts["records"]["all"] and "protein" not in second.counts["records"]["all"]


def test_manifests_record_lineage_counts_and_file_checksums(store, shards):
    dedup = dedup_dataset(store, [str(shards.root)], "demo", run={"run_id": "wf-1"}).manifest
    assert dedup.inputs[0].uri == str(shards.root) and dedup.inputs[0].checksum.startswith("sha256:")
    assert dedup.code_version.startswith("0.1.0")
    assert dedup.tokenizer_hash == default_tokenizer().content_hash
    assert dedup.run == {"run_id": "wf-1"}
    assert dedup.counts["rejects"] == shards.n_rejects
    exact = exact_dedup(ExactDedupConfig(), shards.records)
    assert dedup.counts["duplicates"]["exact"] == exact.duplicates.height
    assert dedup.counts["duplicates"]["near"] == 2
    assert sum(dedup.counts["records"]["all"].values()) == exact.kept.height - 2
    on_disk = json.loads((store.root / "demo" / "manifests" / f"{dedup.version}.json").read_text())
    assert on_disk["counts"] == dedup.counts and on_disk["run"] == {"run_id": "wf-1"}

    split = split_dataset(store, "demo", "demo-split", SPLIT).manifest
    mixed = mix_dataset(store, "demo-split", "demo-mix", MixConfig(temperature=2.0, max_epochs=4)).manifest
    export = export_megatron_dataset(store, "demo-mix", "demo-export").manifest
    assert [i.label() for i in split.inputs] == [dedup.ref]
    assert [i.label() for i in export.inputs] == [mixed.ref]
    assert split.counts["duplicates"] == dedup.counts["duplicates"] and split.counts["rejects"] == shards.n_rejects
    assert set(split.counts["records"]) == {"train", "valid", "test"}
    assert mixed.tables["records"] == split.tables["records"]  # the mix shares the split's table
    blend = json.loads((store.root / export.outputs["blend"]).read_text())
    assert blend["dataset"] == {"name": "demo-export", "version": export.version}
    train_weights = {s["domain"]: s["weight"] for s in mixed.outputs["mixture"]["shares"] if s["split"] == "train"}
    assert blend["splits"]["train"]["weights"] == [train_weights[d] for d in blend["splits"]["train"]["domains"]]
    assert any(path.endswith(".bin") for path in export.files)
    for path, checksum in export.files.items():
        assert checksum == "sha256:" + hashlib.sha256((store.root / path).read_bytes()).hexdigest()


def test_split_stores_only_what_it_adds_and_reads_back_joined(store, shards):
    dedup = dedup_dataset(store, [str(shards.root)], "demo", near=None).manifest
    split = split_dataset(store, "demo", "demo", SPLIT).manifest
    assert split.tables["records"] == dedup.tables["records"]  # the dedup version's table, not a copy
    stored = store.read(split, "assignments")
    assert stored.columns == ["content_id", "group", "split"]
    # a group that is the record's own split_group is not stored twice; the read below gets it back
    assert stored["group"].is_null().any() and store.read(split)["group"].null_count() == 0
    # Read back, the version is what the split computes from the dedup version's records (columns, rows).
    expected = assign_splits(SPLIT, store.read(dedup)).records
    key = ["content_id", "source", "source_id"]
    assert store.read(split).sort(key).equals(expected.sort(key))
    assert store.read(split).height == sum(n for s in split.counts["records"].values() for n in s.values())


def test_diff_lists_removed_ids_and_count_changes(store, shards):
    exact_only = dedup_dataset(store, [str(shards.root)], "demo", near=None).manifest
    with_near = dedup_dataset(store, [str(shards.root)], "demo").manifest
    report = diff(store, f"demo@{exact_only.version}", f"demo@{with_near.version}")
    near_dropped = store.read(with_near, "duplicates").filter(pl.col("reason") == "near")["content_id"]
    assert report["removed"] == 2 and report["added"] == 0
    assert sorted(report["removed_ids"]) == sorted(near_dropped.to_list())
    assert report["count_changes"]["records"] == {"all": {"protein": -2}}
    assert "near" in report["config_changes"]


def test_failed_runs_leave_no_version(store, shards):
    dedup_dataset(store, [str(shards.root)], "demo", near=None)
    with pytest.raises(SplitError):
        split_dataset(store, "demo", "demo-split", SPLIT, exclude=["C1CC(not smiles"])
    assert store.versions("demo-split") == []
    with pytest.raises(InputError, match="neither a dataset"):
        dedup_dataset(store, ["no-such-dataset"], "other")
    with pytest.raises(ValueError, match="split dataset"):
        mix_dataset(store, "demo", "demo-mix")


KILLED_RUN = """
import sys
from pipeline.datasets import dedup_dataset
from pipeline.versions import DatasetStore
dedup_dataset(DatasetStore(sys.argv[1]), [sys.argv[2]], "demo")
"""


@pytest.mark.slow
def test_a_run_killed_before_its_manifest_leaves_the_previous_version(store, shards):
    previous = dedup_dataset(store, [str(shards.root)], "demo", near=None).manifest
    before = store.read(previous)
    env = {**os.environ, PAUSE_ENV: "300"}
    process = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(store.root), str(shards.root)], env=env,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        for line in process.stderr:  # wait until its data is committed and it sits before the manifest
            if "pausing" in line or time.monotonic() > deadline:
                break
        assert process.poll() is None, "the run ended before reaching the manifest"
        assert delta_version(store, "demo") > previous.tables["records"].delta_version  # its data is in Delta
    finally:
        process.kill()
        process.wait()
    assert [m.version for m in store.versions("demo")] == [previous.version]
    assert store.manifest("demo").version == previous.version
    assert store.read(store.manifest("demo")).equals(before)
    # The next run completes and registers the version the killed run was making.
    finished = dedup_dataset(store, [str(shards.root)], "demo")
    assert not finished.reused and store.manifest("demo").version == finished.manifest.version


@pytest.mark.slow
def test_versions_read_with_ray_data_time_travel(store, shards):
    import ray.data

    from pipeline.ray_runtime import ray_session

    old = dedup_dataset(store, [str(shards.root)], "demo", near=None).manifest
    dedup_dataset(store, [str(shards.root)], "demo")
    with ray_session(num_cpus=2):
        table = old.tables["records"]
        dataset = ray.data.read_delta(str(store.root / table.path), version=table.delta_version)
        assert dataset.count() == sum(old.counts["records"]["all"].values())


def test_streaming_dedup_gives_the_same_records_and_version(shards, tmp_path):
    records = shards.root / "records"
    in_memory = dedup_dataset(DatasetStore(tmp_path / "a"), [str(records)], "demo").manifest
    streaming = StreamingConfig(batch_rows=50, bucket_rows=200)
    streamed = dedup_dataset(DatasetStore(tmp_path / "b"), [str(records)], "demo", streaming=streaming).manifest
    assert streamed.version == in_memory.version and streamed.counts == in_memory.counts
    key = ["content_id", "source", "source_id"]
    first = DatasetStore(tmp_path / "a").read(in_memory).sort(key)
    second = DatasetStore(tmp_path / "b").read(streamed).sort(key)
    assert first.equals(second)
    found = [DatasetStore(tmp_path / p).read(m, "duplicates").sort(key) for p, m in (("a", in_memory), ("b", streamed))]
    assert found[0].equals(found[1]) and found[0].height > 0
    assert not list((tmp_path / "b" / "demo" / "files").glob(".staging-*"))
