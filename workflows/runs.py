"""The record of each workflow run: config, status, and what every stage produced or reused.

``$LOGOS_HOME/runs/<run_id>/run.json`` is rewritten after each stage, so a killed run still shows how
far it got. Dataset manifests and training checkpoints carry the run id; this is the other direction
(which versions a run consumed), used by ``logos report`` to find the training curves of a dataset.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.redact import redact, redact_text, secret_values


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    run_id: str
    workflow: str
    config: dict[str, Any]
    config_sha256: str
    root: str
    started: str = field(default_factory=now)
    finished: str | None = None
    status: str = "running"  # running | succeeded | failed
    error: str | None = None
    stages: dict[str, Any] = field(default_factory=dict)  # node -> {"output": ..., "executed": bool}

    @property
    def path(self) -> Path:
        return Path(self.root) / self.run_id / "run.json"

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
        # The config may carry storage credentials (source options): written redacted, also inside the error.
        record = redact(asdict(self))
        if self.error:
            record["error"] = redact_text(self.error, secret_values(self.config))
        temporary.write_text(json.dumps(record, indent=1, default=str))
        os.replace(temporary, self.path)

    def dataset_refs(self) -> set[str]:
        refs = set()
        for stage in self.stages.values():
            output = stage.get("output") or {}
            if isinstance(output, dict) and output.get("type") == "DatasetRef":
                refs.add(f"{output['name']}@{output['version']}")
        return refs

    def stages_with(self, dataset_ref: str) -> list[str]:
        """The stages whose output is ``dataset_ref`` (made in this run or found made)."""
        return [name for name, stage in self.stages.items() if isinstance(stage.get("output"), dict)
                and stage["output"].get("type") == "DatasetRef"
                and f"{stage['output']['name']}@{stage['output']['version']}" == dataset_ref]

    def eval_results(self) -> Path | None:
        evaluated = (self.stages.get("evaluated") or {}).get("output") or {}
        found = isinstance(evaluated, dict) and evaluated.get("path")
        return Path(evaluated["path"]) / "results.json" if found else None

    def metrics_file(self) -> Path | None:
        trained = (self.stages.get("trained") or {}).get("output") or {}
        return Path(trained["metrics_path"]) if isinstance(trained, dict) and trained.get("metrics_path") else None


def load_runs(root: Path) -> list[RunRecord]:
    records = []
    for path in sorted(root.glob("*/run.json")):
        try:
            records.append(RunRecord(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue  # a run file being rewritten, or from another version: not fatal for listings
    return sorted(records, key=lambda r: r.started)


def runs_using(dataset_ref: str, root: Path | None) -> list[RunRecord]:
    """Runs (newest first) whose stages produced or reused exactly ``dataset_ref``.

    Only that version: a run that shares an ancestor (the same split, another mixture) made other data.
    A run still in progress has not recorded its stages yet, so its caller adds it itself.
    """
    if root is None or not root.is_dir():
        return []
    return [r for r in reversed(load_runs(root)) if dataset_ref in r.dataset_refs()]
