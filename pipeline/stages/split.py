"""``split``: group-wise train/valid/test assignments over the input's records, and decontamination."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from pipeline.io import read_text
from pipeline.split import SplitConfig, assign_splits, read_exclusions, resolved_method
from pipeline.stages import check_domains
from pipeline.versions import DatasetStore, TableRef
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

    One row per ``content_id``: records with the same content share their group, hence their split."""
    records = loaded.records.collect()
    if settings.config.use_ray:
        from pipeline.ray_runtime import ray_session

        with ray_session():
            result = assign_splits(settings.config, records, settings.exclusions, workers=settings.config.workers)
    else:
        result = assign_splits(settings.config, records, settings.exclusions, workers=settings.config.workers)
    counts = record_counts(result.records) | inherited_counts(loaded)
    counts["excluded"] = result.excluded.height
    assignments = result.records.select("content_id", "group", "split").unique("content_id", maintain_order=True)
    excluded = result.excluded.select("content_id", "group").unique("content_id", maintain_order=True)
    base = records_table(loaded)
    if base is None:  # shards given directly: the records are stored once, here
        base = records.drop([c for c in ("group", "split") if c in records.columns])
    return StageOutput({"records": base, "assignments": assignments, "excluded": excluded}, counts)


def records_table(loaded: Inputs) -> TableRef | None:
    """The stored records table of the one dataset input (without any split columns), if it is one."""
    if len(loaded.manifests) == 1 and len(loaded.refs) == 1:
        return loaded.manifests[0].tables["records"]
    return None


def identity(settings: SplitSettings) -> dict[str, Any]:
    digest = hashlib.sha256("\n".join(sorted(settings.exclusions)).encode()).hexdigest()
    return semantic_config(settings.config) | {"exclude": {"entries": len(settings.exclusions), "sha256": digest}}
