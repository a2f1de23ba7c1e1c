"""What each workflow stage returns: small descriptors of outputs that live on disk.

The DAG passes these between stages and Hamilton caches them; ``is_valid()`` lets the cache refuse a
descriptor whose files were deleted or never finished (then the stage runs again). Plain dataclasses
of strings and numbers, so Hamilton fingerprints them by value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FileSet:
    """The input files of one source, with a cheap fingerprint (names, sizes, modification times)."""

    source: str
    uris: tuple[str, ...]
    fingerprint: str

    def is_valid(self) -> bool:
        return True


@dataclass(frozen=True)
class ShardsRef:
    """An ingest output folder; valid while its summary (written last) is there."""

    source: str
    uri: str
    items: dict[str, int] = field(default_factory=dict)
    records: int = 0

    def is_valid(self) -> bool:
        from pipeline.io import is_file, join_uri

        return is_file(join_uri(self.uri, "summary.json"))


@dataclass(frozen=True)
class DatasetRef:
    """A registered dataset version in the store at ``store_root``."""

    store_root: str
    name: str
    version: str
    stage: str
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def is_valid(self) -> bool:
        from pipeline.versions import DatasetStore

        return DatasetStore(self.store_root).find(self.name, self.version) is not None

    def blend_path(self) -> Path:
        """The blend as a local file (with its .bin/.idx beside it: fetched once from a remote store)."""
        from pipeline.versions import DatasetStore

        folder, _, name = self.outputs["blend"].rpartition("/")
        return DatasetStore(self.store_root).local_copy(folder) / name


@dataclass(frozen=True)
class TrainedRef:
    run_dir: str
    checkpoint: str | None
    steps: int
    final_loss: float | None
    metrics_path: str
    valid_loss: dict[str, float] = field(default_factory=dict)

    def is_valid(self) -> bool:
        return self.checkpoint is not None and Path(self.checkpoint).is_dir() and Path(self.metrics_path).is_file()


@dataclass(frozen=True)
class FolderRef:
    """An exported model or a report: valid while its main file exists."""

    path: str
    main_file: str

    def is_valid(self) -> bool:
        return (Path(self.path) / self.main_file).is_file()


def describe(value: Any) -> Any:
    """JSON-able view of a stage output, for the run record."""
    if hasattr(value, "__dataclass_fields__"):
        return {"type": type(value).__name__, **{k: describe(v) for k, v in vars(value).items()}}
    if isinstance(value, dict):
        return {k: describe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [describe(v) for v in value]
    return value if isinstance(value, str | int | float | bool | type(None)) else json.dumps(value, default=str)
