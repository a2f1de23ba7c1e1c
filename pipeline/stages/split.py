"""``split``: group-wise train/valid/test assignments over the input's records, and decontamination."""

from __future__ import annotations

import hashlib
import typing
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pyarrow as pa

from pipeline.io import read_text
from pipeline.partitions import as_json, plan_partitions
from pipeline.split import SplitConfig, assign_splits, read_exclusions, resolved_method, split_files, stored_assignments
from pipeline.stages import check_domains
from pipeline.versions import DatasetStore, Manifest, TableRef
from pipeline.versions.stage import Inputs, StageOutput, inherited_counts, record_counts, semantic_config


@dataclass(frozen=True)
class SplitSettings:
    """Group-wise split, and decontamination: entries removed from train with their groups."""

    config: SplitConfig = field(default_factory=SplitConfig)
    exclude: str | None = None  # a file of exclusion entries (``pipeline.split.read_exclusions``)
    exclusions: tuple[str, ...] = ()  # entries given directly (added to the file's)

    def __post_init__(self) -> None:
        check_domains("config.time_split.domains", self.config.time_split.domains if self.config.time_split else None)


CONFIG = SplitSettings


def prepare(settings: SplitSettings) -> SplitSettings:
    """Protein clustering "auto" becomes the method that runs here (so the version says which), and the
    exclusion file's entries join the direct ones (so the version depends on the entries, not the path)."""
    entries = list(settings.exclusions)
    if settings.exclude is not None:
        entries += read_exclusions(read_text(settings.exclude).splitlines())  # a local path or a URI
    return SplitSettings(resolved_method(settings.config), None, tuple(entries))


def compute(settings: SplitSettings, loaded: Inputs, name: str, version: str, store: DatasetStore) -> StageOutput:
    """Assignments (``content_id, group, split``) over the input's records table, which is referenced, not
    copied; records removed by decontamination go to ``excluded`` (``content_id, group``).

    One row per ``content_id``: records with the same content share their group, hence their split.
    A dedup version's records are split where they are stored (``split_stored``: tasks read their partitions
    and write their assignments; the driver holds counts); shards given directly, or a split version split
    again, are read here (``assign_splits``)."""
    if stored_input(loaded) is not None:
        return split_stored(settings, loaded, name, version, store)
    records = loaded.records.collect()
    if settings.config.use_ray:
        from pipeline.ray_runtime import ray_session

        with ray_session():
            result = assign_splits(settings.config, records, settings.exclusions, workers=settings.config.workers,
                                   partition_rows=settings.config.partition_rows)
    else:
        result = assign_splits(settings.config, records, settings.exclusions, workers=settings.config.workers,
                               partition_rows=settings.config.partition_rows)
    counts = record_counts(result.records) | inherited_counts(loaded)
    counts["excluded"] = result.excluded.height
    assignments = stored_assignments(result.records)
    excluded = result.excluded.select("content_id", "group").unique("content_id", maintain_order=True)
    base = records_table(loaded)
    if base is None:  # shards given directly: the records are stored once, here
        base = records.drop([c for c in ("group", "split") if c in records.columns])
    return StageOutput({"records": base, "assignments": assignments, "excluded": excluded}, counts)


def stored_input(loaded: Inputs) -> Manifest | None:
    """The one dataset input whose records table is read as it is stored (not a split version: its records
    are the join with its assignments, so they are read through that join)."""
    if len(loaded.manifests) == 1 and len(loaded.refs) == 1 and "assignments" not in loaded.manifests[0].tables:
        return loaded.manifests[0]
    return None


def split_stored(settings: SplitSettings, loaded: Inputs, name: str, version: str, store: DatasetStore) -> StageOutput:
    """``split_files`` over the stored records table's files: partitions of ``config.partition_rows`` rows, each
    task writing its assignments file into the table's folder, one Delta commit here. The manifest's
    ``partitions`` output names each partition's records rows and assignments file, for the export's tasks."""
    source = typing.cast(Manifest, stored_input(loaded))
    records = source.tables["records"]
    storage = store.delta_options()
    plan = plan_partitions(store.table_files(source), settings.config.partition_rows, storage)
    filesystem, folder = store.table_folder(name, "assignments")
    domains = {d for by_domain in source.counts.get("records", {}).values() for d in by_domain} \
        if "records" in source.counts else None
    run = partial(split_files, settings.config, plan, filesystem, folder, f"part-{version}", settings.exclusions,
                  workers=settings.config.workers, storage=storage, domains=domains)
    if settings.config.use_ray and settings.config.workers is None:
        from pipeline.ray_runtime import ray_session

        with ray_session():
            result = run()
    else:
        result = run()
    assignments = store.commit_files(name, "assignments", ASSIGNMENT_SCHEMA,
                                     [(w.file, w.size, w.rows) for w in result.written])
    counts = result.counts() | inherited_counts(loaded)
    counts["excluded"] = sum(w.removed_rows for w in result.written)
    partitions = [{"records": rows, "assignments": w.file}
                  for rows, w in zip(as_json(plan, store.uri(records.path)), result.written, strict=True)]
    return StageOutput({"records": records, "assignments": assignments, "excluded": result.excluded}, counts,
                       {"partitions": partitions})


ASSIGNMENT_SCHEMA = pa.schema([("content_id", pa.string()), ("group", pa.string()), ("split", pa.string())])


def records_table(loaded: Inputs) -> TableRef | None:
    """The stored records table of the one dataset input (without any split columns), if it is one."""
    if len(loaded.manifests) == 1 and len(loaded.refs) == 1:
        return loaded.manifests[0].tables["records"]
    return None


def identity(settings: SplitSettings) -> dict[str, Any]:
    digest = hashlib.sha256("\n".join(sorted(settings.exclusions)).encode()).hexdigest()
    return semantic_config(settings.config) | {"exclude": {"entries": len(settings.exclusions), "sha256": digest}}
