"""``dedup``: exact dedup, then near dedup of what is left; kept records, duplicates and rejects tables."""

from __future__ import annotations

import shutil
import typing
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.dedup import (
    ExactDedupConfig,
    StreamingConfig,
    empty_duplicates,
    exact_dedup,
    exact_dedup_files,
    read_batches,
)
from pipeline.near_dedup import NearDedupConfig, near_dedup
from pipeline.records import SHARD_SCHEMA, conform_shard_batch, conform_shard_frame
from pipeline.stages import check_domains
from pipeline.versions import DatasetStore, TableRef
from pipeline.versions.stage import Inputs, StageOutput, inherited_counts, record_counts, semantic_config


@dataclass(frozen=True)
class DedupSettings:
    """Exact dedup, then near dedup of what is left (``near: null``: exact only)."""

    exact: ExactDedupConfig = field(default_factory=ExactDedupConfig)
    near: NearDedupConfig | None = field(default_factory=NearDedupConfig)
    # Exact dedup in passes over the input files with flat memory (``exact_dedup_files``); the same records.
    streaming: StreamingConfig | None = field(default=None, metadata={"execution": True})

    def __post_init__(self) -> None:
        check_domains("near.domains", self.near.domains if self.near is not None else None)


CONFIG = DedupSettings


def compute(config: DedupSettings, loaded: Inputs, name: str, version: str, store: DatasetStore) -> StageOutput:
    """Kept records, duplicates and rejects tables. Streaming writes the records to Delta as they stream
    (only the near-dedup domains are loaded): the same records, in input order rather than sorted."""
    if config.streaming is None:
        kept, duplicates = dedup_in_memory(loaded, config.exact, config.near)
        records: pl.DataFrame | TableRef = kept
    else:
        records, duplicates = dedup_streaming(store, name, version, loaded, config)
        kept = store.scan_ref(records)
    tables: dict[str, Any] = {"records": records, "duplicates": duplicates}
    if loaded.rejects is not None:
        tables["rejects"] = loaded.rejects.collect()
    lineage = inherited_counts(loaded)
    found = {reason: int(n) for reason, n in duplicates["reason"].value_counts().iter_rows()}
    duplicates_count = {r: lineage["duplicates"].get(r, 0) + found.get(r, 0) for r in ("exact", "near")}
    counts = record_counts(kept) | {"rejects": lineage["rejects"], "duplicates": duplicates_count}
    return StageOutput(tables, counts)


def dedup_in_memory(
    loaded: Inputs, exact: ExactDedupConfig, near: NearDedupConfig | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    exact_result = exact_dedup(exact, loaded.records.collect())
    if near is None:
        return exact_result.kept, exact_result.duplicates
    near_result = run_near(near, exact_result.kept)
    return near_result.kept, pl.concat([exact_result.duplicates, near_result.duplicates])


def dedup_streaming(store: DatasetStore, name: str, version: str, loaded: Inputs, config: DedupSettings,
                    ) -> tuple[TableRef, pl.DataFrame]:
    near, streaming = config.near, typing.cast(StreamingConfig, config.streaming)
    work = store.staging_dir(name, version)
    try:
        result = exact_dedup_files(config.exact, loaded.files, work, streaming, workers=streaming.workers)
        near_duplicates = empty_duplicates()
        if near is not None:
            kept = conform_shard_frame(pl.scan_parquet([str(p) for p in result.kept_files], missing_columns="insert"))
            subset = kept if near.domains is None else kept.filter(pl.col("domain").is_in(near.domains))
            near_duplicates = run_near(near, subset.collect()).duplicates
        dropped = pa.array(near_duplicates["content_id"].to_list(), pa.string())
        batches = (
            without(conform_shard_batch(batch), dropped)
            for path in result.kept_files
            for batch in read_batches(str(path), streaming.batch_rows)
        )
        records = store.write_table(name, "records", pa.RecordBatchReader.from_batches(SHARD_SCHEMA, batches))
        exact_duplicates = pl.read_parquet(result.duplicates_file).drop("_file", "_row")
        return records, pl.concat([exact_duplicates, near_duplicates])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def without(batch: pa.RecordBatch, content_ids: pa.Array) -> pa.RecordBatch:
    return batch.filter(pc.invert(pc.is_in(batch["content_id"], content_ids)))


def run_near(config: NearDedupConfig, records: pl.DataFrame):
    if not config.use_ray:
        return near_dedup(config, records)
    from pipeline.ray_runtime import ray_session

    with ray_session():
        return near_dedup(config, records)


def identity(config: DedupSettings) -> dict[str, Any]:
    return {"exact": semantic_config(config.exact), "near": semantic_config(config.near) if config.near else None}
