"""The dataset stages as Python calls, and ``diff`` between two versions.

The stages themselves are declared once in ``pipeline.stages`` (config, compute, CLI flags, DAG node);
these functions only name a stage and build its config from keyword arguments, for Python callers and
tests: ``dedup_dataset(store, inputs, name, near=None)`` is ``REGISTRY["dedup"].run(store, inputs, name,
DedupSettings(near=None))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from pipeline.dedup import ExactDedupConfig, StreamingConfig
from pipeline.export_megatron import ExportConfig
from pipeline.mix import MixConfig
from pipeline.near_dedup import NearDedupConfig
from pipeline.split import SplitConfig
from pipeline.stages import REGISTRY, DedupSettings, SplitSettings, token_counts
from pipeline.versions import DatasetStore
from pipeline.versions.stage import InputError, StageRun

DEFAULT_EXACT, DEFAULT_NEAR, DEFAULT_SPLIT = ExactDedupConfig(), NearDedupConfig(), SplitConfig()
DEFAULT_MIX, DEFAULT_EXPORT = MixConfig(), ExportConfig()

__all__ = [
    "DatasetStore",
    "InputError",
    "StageRun",
    "dedup_dataset",
    "diff",
    "export_megatron_dataset",
    "mix_dataset",
    "split_dataset",
    "token_counts",
]


def dedup_dataset(
    store: DatasetStore, inputs: Sequence[str], name: str, exact: ExactDedupConfig = DEFAULT_EXACT,
    near: NearDedupConfig | None = DEFAULT_NEAR, run: dict[str, Any] | None = None,
    streaming: StreamingConfig | None = None,
) -> StageRun:
    return REGISTRY["dedup"].run(store, inputs, name, DedupSettings(exact, near, streaming), run)


def split_dataset(
    store: DatasetStore, input: str, name: str, config: SplitConfig = DEFAULT_SPLIT, exclude: Sequence[str] = (),
    run: dict[str, Any] | None = None,
) -> StageRun:
    return REGISTRY["split"].run(store, [input], name, SplitSettings(config, exclusions=tuple(exclude)), run)


def mix_dataset(
    store: DatasetStore, input: str, name: str, config: MixConfig = DEFAULT_MIX, run: dict[str, Any] | None = None
) -> StageRun:
    return REGISTRY["mix"].run(store, [input], name, config, run)


def export_megatron_dataset(
    store: DatasetStore, input: str, name: str, config: ExportConfig = DEFAULT_EXPORT,
    run: dict[str, Any] | None = None,
) -> StageRun:
    return REGISTRY["export"].run(store, [input], name, config, run)


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
