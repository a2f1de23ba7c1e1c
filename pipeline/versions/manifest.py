"""Dataset manifests and content-addressed version ids.

A version id is ``sha256`` over the canonical JSON of (stage, inputs with their versions or
checksums, config, code version, tokenizer hash), cut to 16 hex digits: the same inputs and config
give the same id, and any change gives a new one. The code version is the package version plus the
git commit when the code runs from a checkout (uncommitted edits are not seen).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.redact import redact

MANIFEST_FORMAT = "logos-dataset/1"


@dataclass(frozen=True)
class InputRef:
    """A stage input: a registered dataset version, or an external URI with a content checksum."""

    name: str | None = None
    version: str | None = None
    uri: str | None = None
    checksum: str | None = None

    def label(self) -> str:
        return f"{self.name}@{self.version}" if self.name else f"{self.uri} ({self.checksum})"


@dataclass(frozen=True)
class TableRef:
    path: str  # relative to the store root
    delta_version: int


@dataclass
class Manifest:
    name: str
    version: str
    stage: str
    inputs: list[InputRef]
    config: dict[str, Any]
    code_version: str
    tokenizer_hash: str
    counts: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, TableRef] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # path relative to the store root -> sha256
    outputs: dict[str, Any] = field(default_factory=dict)  # stage results: mixture report, blend path
    run: dict[str, Any] = field(default_factory=dict)  # free-form lineage (e.g. the workflow run id)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="microseconds"))
    format: str = MANIFEST_FORMAT

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_json(self) -> str:
        return json.dumps(redact(asdict(self)), indent=1, sort_keys=True)  # no credential is ever written

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        if raw.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"not a {MANIFEST_FORMAT} manifest (format {raw.get('format')!r})")
        raw["inputs"] = [InputRef(**i) for i in raw["inputs"]]
        raw["tables"] = {k: TableRef(**t) for k, t in raw["tables"].items()}
        return cls(**raw)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def version_id(stage: str, inputs: list[InputRef], config: dict[str, Any], code: str, tokenizer_hash: str) -> str:
    # A URI input counts by its content checksum, not its location: the same shards copied elsewhere
    # (another machine, another LOGOS_HOME) make the same version.
    identities = [{"checksum": i.checksum} if i.checksum else asdict(i) for i in inputs]
    recipe = {"stage": stage, "inputs": identities, "config": config, "code": code, "tokenizer": tokenizer_hash}
    return hashlib.sha256(canonical_json(recipe).encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def code_version() -> str:
    try:
        version = metadata.version("logos")
    except metadata.PackageNotFoundError:
        version = "unknown"
    root = Path(__file__).resolve().parents[2]
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return version
    commit = done.stdout.strip()
    return f"{version}+g{commit[:12]}" if done.returncode == 0 and commit else version


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()
