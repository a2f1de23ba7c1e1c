"""The run-time context every stage gets: where things live, the run's identity, how to execute.

Nothing here changes a stage's result, so the DAG's cache ignores it (a new run id must not
invalidate finished stages).

``home`` is a local folder or any fsspec URI (``s3://bucket/prefix``; endpoint and credentials from the
environment or a named profile, never from the workflow file). What every process of a run must reach
lives under it (``uri``): ingest shards, the dataset store, the run's executed-stage markers. What is only
read on this machine (the DAG's result cache, run records, the built tokenizer, training runs, models,
evaluations, reports) lives under ``path``: the home itself when it is local, else ``local_home``, a
folder under ``$LOGOS_CACHE`` (default ``~/.cache/logos``) named by the home's URI.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsspec.core import url_to_fs

from pipeline.io import CACHE_ENV, is_file, is_remote, join_uri, write_text
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
    local_home: str = ""  # where this machine's own outputs go; set from ``home`` when not given

    def __post_init__(self) -> None:
        if not self.local_home:
            object.__setattr__(self, "local_home", default_local_home(self.home))

    @property
    def store(self) -> DatasetStore:
        return DatasetStore(self.uri("datasets"))

    def uri(self, *parts: str) -> str:
        """A location under ``home`` (a local path or a URI): what every process of the run reads."""
        return join_uri(self.home, *parts)

    def path(self, *parts: str) -> Path:
        """A local folder for what only this machine reads (``home`` itself when it is local)."""
        return Path(self.local_home).joinpath(*parts)

    def lineage(self, stage: str) -> dict[str, Any]:
        return {"run_id": self.run_id, "workflow": self.workflow, "config_sha256": self.config_sha256, "stage": stage}

    def enter(self, stage: str) -> None:
        """A stage is about to do work (its output was not found): note it in the run's folder, which
        every process of the run can reach, also Ray workers on other nodes of a shared filesystem."""
        if self.fail_stage == stage and not self.dry_run:
            raise InjectedFailure(f"injected failure in stage {stage!r} (LOGOS_FAIL_STAGE)")
        write_text(self.uri("runs", self.run_id, "executed", stage), "")

    def executed(self) -> list[str]:
        fs, folder = url_to_fs(self.uri("runs", self.run_id, "executed"))
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.glob(folder + "/*")) if fs.isdir(folder) else []

    def has(self, *parts: str) -> bool:
        """Whether the file ``home/parts...`` exists (a finished output's marker, e.g. an ingest summary)."""
        return is_file(self.uri(*parts))


def default_local_home(home: str) -> str:
    """``home`` when it is local; for a remote home a local folder named by its URI."""
    if not is_remote(home):
        return home
    cache = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "logos")
    return str(cache / "homes" / hashlib.sha256(home.rstrip("/").encode()).hexdigest()[:16])


def content_address(*parts: Any) -> str:
    """A short stable hash of JSON-able parts: the folder name of an output made from exactly them."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
