"""The dataset stages as versions: dedup, split, mix and Megatron export over a ``DatasetStore``.

Each function reads its inputs (dataset references or shard URIs), calls the stage function from its
module, and registers the result as a content-addressed version (``pipeline.versions``); calling it
again with the same inputs and config returns the registered version without recomputing.
``diff`` compares two versions. The workflow DAG and the CLI call these; they hold no CLI concerns.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from dataclasses import asdict
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
from pipeline.export_megatron import BLEND_FILE, ExportConfig, export_megatron
from pipeline.mix import MixConfig, mix
from pipeline.near_dedup import NearDedupConfig, near_dedup
from pipeline.records import SHARD_SCHEMA, conform_shard_batch, conform_shard_frame
from pipeline.split import SplitConfig, assign_splits, resolved_method
from pipeline.versions import DatasetStore, Manifest, TableRef
from pipeline.versions.stage import (
    InputError,
    Inputs,
    StageOutput,
    StageRun,
    inherited_counts,
    record_counts,
    run_stage,
    semantic_config,
    stage_tokenizer,
)

DEFAULT_EXACT, DEFAULT_NEAR, DEFAULT_SPLIT = ExactDedupConfig(), NearDedupConfig(), SplitConfig()
DEFAULT_MIX, DEFAULT_EXPORT = MixConfig(), ExportConfig()
NATURAL_MIX = MixConfig(temperature=1.0)  # export of an unmixed input: every domain in its own proportion

__all__ = [
    "DatasetStore", "InputError", "StageRun",
    "dedup_dataset", "diff", "export_megatron_dataset", "mix_dataset", "split_dataset",
]


def dedup_dataset(
    store: DatasetStore, inputs: Sequence[str], name: str, exact: ExactDedupConfig = DEFAULT_EXACT,
    near: NearDedupConfig | None = DEFAULT_NEAR, run: dict[str, Any] | None = None,
    streaming: StreamingConfig | None = None,
) -> StageRun:
    """Exact dedup, then near dedup of what is left; kept records, duplicates and rejects tables.

    With ``streaming``, exact dedup runs in passes over the input files (``exact_dedup_files``: flat
    memory) and the records are written to Delta as they stream; only the near-dedup domains are
    loaded. Same records as in memory (in input order rather than sorted), hence the same version.
    """

    def compute(loaded: Inputs, version: str, store: DatasetStore) -> StageOutput:
        if streaming is None:
            kept, duplicates = dedup_in_memory(loaded, exact, near)
            records: pl.DataFrame | TableRef = kept
        else:
            records, duplicates = dedup_streaming(store, name, version, loaded, exact, near, streaming)
            kept = store.scan_ref(records)
        tables: dict[str, Any] = {"records": records, "duplicates": duplicates}
        if loaded.rejects is not None:
            tables["rejects"] = loaded.rejects.collect()
        lineage = inherited_counts(loaded)
        found = {reason: int(n) for reason, n in duplicates["reason"].value_counts().iter_rows()}
        duplicates_count = {r: lineage["duplicates"].get(r, 0) + found.get(r, 0) for r in ("exact", "near")}
        counts = record_counts(kept) | {"rejects": lineage["rejects"], "duplicates": duplicates_count}
        return StageOutput(tables, counts)

    config = {"exact": semantic_config(exact), "near": semantic_config(near) if near else None}
    return run_stage(store, name, "dedup", inputs, config, compute, run)


def dedup_in_memory(
    loaded: Inputs, exact: ExactDedupConfig, near: NearDedupConfig | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    exact_result = exact_dedup(exact, loaded.records.collect())
    if near is None:
        return exact_result.kept, exact_result.duplicates
    near_result = run_near(near, exact_result.kept)
    return near_result.kept, pl.concat([exact_result.duplicates, near_result.duplicates])


def dedup_streaming(
    store: DatasetStore, name: str, version: str, loaded: Inputs, exact: ExactDedupConfig,
    near: NearDedupConfig | None, streaming: StreamingConfig,
) -> tuple[TableRef, pl.DataFrame]:
    work = store.staging_dir(name, version)
    try:
        result = exact_dedup_files(exact, loaded.files, work, streaming)
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


def split_dataset(
    store: DatasetStore, input: str, name: str, config: SplitConfig = DEFAULT_SPLIT, exclude: Sequence[str] = (),
    run: dict[str, Any] | None = None,
) -> StageRun:
    """Group-wise train/valid/test split; records removed by decontamination go to an ``excluded`` table."""
    config = resolved_method(config)  # "auto" becomes what runs here, so the version says which

    def compute(loaded: Inputs, version: str, store: DatasetStore) -> StageOutput:
        records = loaded.records.collect()
        if config.use_ray:
            from pipeline.ray_runtime import ray_session

            with ray_session():
                result = assign_splits(config, records, exclude)
        else:
            result = assign_splits(config, records, exclude)
        counts = record_counts(result.records) | inherited_counts(loaded)
        counts["excluded"] = result.excluded.height
        return StageOutput({"records": result.records, "excluded": result.excluded}, counts)

    exclusion_hash = hashlib.sha256("\n".join(sorted(exclude)).encode()).hexdigest()
    semantic = semantic_config(config) | {"exclude": {"entries": len(exclude), "sha256": exclusion_hash}}
    return run_stage(store, name, "split", [input], semantic, compute, run)


def token_counts(
    records: pl.LazyFrame, specials: int = 1
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Tokens as exported (``specials`` per document: the tokenizer's prefix and the EOD) and documents
    per split and domain."""
    grouped = records.group_by("split", "domain").agg(docs=pl.len(),
                                                      tokens=pl.col("n_tokens").sum() + specials * pl.len())
    tokens: dict[str, dict[str, int]] = {}
    documents: dict[str, dict[str, int]] = {}
    for split, domain, docs, n in grouped.collect().iter_rows():
        tokens.setdefault(split, {})[domain] = int(n)
        documents.setdefault(split, {})[domain] = int(docs)
    return tokens, documents


def mix_dataset(
    store: DatasetStore, input: str, name: str, config: MixConfig = DEFAULT_MIX, run: dict[str, Any] | None = None
) -> StageRun:
    """Mixture weights for a split dataset; the records table is the input's (not copied)."""

    def compute(loaded: Inputs, version: str, store: DatasetStore) -> StageOutput:
        source = only_dataset(loaded, "mix")
        specials = len(stage_tokenizer(store, loaded).prefix_ids) + 1
        mixture = mix(config, *token_counts(store.scan(source), specials))
        return StageOutput({"records": source.tables["records"]}, source.counts, {"mixture": mixture.as_dict()})

    return run_stage(store, name, "mix", [input], semantic_config(config), compute, run)


def export_megatron_dataset(
    store: DatasetStore, input: str, name: str, config: ExportConfig = DEFAULT_EXPORT,
    run: dict[str, Any] | None = None,
) -> StageRun:
    """``.bin/.idx`` per (split, domain) and a blend; weights from the input's mixture (natural if none).

    The documents are written with the input's tokenizer (its prefix and EOD), which is saved next to
    the blend; int32 when its vocabulary does not fit uint16."""

    def compute(loaded: Inputs, version: str, store: DatasetStore) -> StageOutput:
        source = only_dataset(loaded, "export")
        records = store.scan(source)
        tokenizer = stage_tokenizer(store, loaded)
        specials = len(tokenizer.prefix_ids) + 1
        mixture = source.outputs.get("mixture") or mix(NATURAL_MIX, *token_counts(records, specials)).as_dict()
        weights: dict[str, dict[str, float]] = {}
        for share in mixture["shares"]:
            weights.setdefault(share["split"], {})[share["domain"]] = share["weight"]
        staging = store.staging_dir(name, version)
        dataset = {"name": name, "version": version}
        result = export_megatron(config, records, weights, staging, tokenizer, dataset)
        blend = store.dataset_dir(name).relative_to(store.root) / "files" / version / BLEND_FILE
        outputs = {"blend": str(blend), "mixture": mixture, "documents": result.documents, "tokens": result.tokens}
        return StageOutput({"records": source.tables["records"]}, source.counts, outputs, staging)

    return run_stage(store, name, "export_megatron", [input], semantic_config(config), compute, run)


def only_dataset(loaded: Inputs, stage: str) -> Manifest:
    if len(loaded.manifests) != 1 or len(loaded.refs) != 1:
        labels = [r.label() for r in loaded.refs]
        raise ValueError(f"{stage} takes exactly one registered dataset as input, got {labels}")
    manifest = loaded.manifests[0]
    if "split" not in loaded.records.collect_schema().names():
        raise ValueError(f"{stage} needs a split dataset; {manifest.ref} has no split column (run `logos split`)")
    return manifest


def diff(store: DatasetStore, a: str, b: str, show: int = 20) -> dict[str, Any]:
    """Count changes and added/removed record ids (``content_id``) between two versions."""
    first, second = store.manifest(a), store.manifest(b)
    ids_a = store.scan(first).select("content_id").unique()
    ids_b = store.scan(second).select("content_id").unique()
    added = ids_b.join(ids_a, on="content_id", how="anti").sort("content_id").collect()["content_id"]
    removed = ids_a.join(ids_b, on="content_id", how="anti").sort("content_id").collect()["content_id"]
    changes: dict[str, dict[str, dict[str, int]]] = {}
    for kind in ("records", "tokens"):
        before, after = first.counts.get(kind, {}), second.counts.get(kind, {})
        for split in sorted(set(before) | set(after)):
            for domain in sorted(set(before.get(split, {})) | set(after.get(split, {}))):
                old, new = before.get(split, {}).get(domain, 0), after.get(split, {}).get(domain, 0)
                if old != new:
                    changes.setdefault(kind, {}).setdefault(split, {})[domain] = new - old
    return {
        "a": first.ref, "b": second.ref, "count_changes": changes,
        "added": len(added), "removed": len(removed),
        "added_ids": added.head(show).to_list(), "removed_ids": removed.head(show).to_list(),
        "config_changes": {
            key: [first.config.get(key), second.config.get(key)]
            for key in sorted(set(first.config) | set(second.config))
            if first.config.get(key) != second.config.get(key)
        },
        "inputs": [[asdict(i) for i in first.inputs], [asdict(i) for i in second.inputs]],
    }
