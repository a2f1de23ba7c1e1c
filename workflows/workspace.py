"""The run-time context every stage gets: where things live, the run's identity, how to execute.

Nothing here changes a stage's result, so the DAG's cache ignores it (a new run id must not
invalidate finished stages).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.versions import DatasetStore


class InjectedFailure(RuntimeError):
    """Raised on purpose (``LOGOS_FAIL_STAGE``) to test that a failed run resumes."""


@dataclass(frozen=True)
class Planned:
    """A dry run's stand-in for an output that does not exist yet: the stage would run."""

    stage: str


@dataclass(frozen=True)
class Workspace:
    home: str
    run_id: str
    workflow: str
    config_sha256: str
    base_dir: str  # the workflow file's folder: relative inputs resolve against it
    ray_address: str | None = None
    workers: int | None = None
    chunk_items: int | None = None
    tokenizer_engine: str = "python"
    dry_run: bool = False
    fail_stage: str | None = None

    @property
    def store(self) -> DatasetStore:
        return DatasetStore(Path(self.home) / "datasets")

    def path(self, *parts: str) -> Path:
        return Path(self.home).joinpath(*parts)

    def lineage(self, stage: str) -> dict[str, Any]:
        return {"run_id": self.run_id, "workflow": self.workflow, "config_sha256": self.config_sha256, "stage": stage}

    def enter(self, stage: str) -> None:
        """A stage is about to do work (its output was not found): note it in the run's folder, which
        every process of the run can reach, also Ray workers on other nodes of a shared filesystem."""
        if self.fail_stage == stage and not self.dry_run:
            raise InjectedFailure(f"injected failure in stage {stage!r} (LOGOS_FAIL_STAGE)")
        marker = self.path("runs", self.run_id, "executed", stage)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()

    def executed(self) -> list[str]:
        folder = self.path("runs", self.run_id, "executed")
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def content_address(*parts: Any) -> str:
    """A short stable hash of JSON-able parts: the folder name of an output made from exactly them."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
