"""The dataset store: Delta tables per dataset, one manifest per version, written last and atomically.

Layout under the root (``$LOGOS_HOME/datasets``, default ``./.logos/datasets``)::

    <name>/tables/<table>/              Delta tables (records, duplicates, rejects, excluded)
    <name>/files/<version>/             exported files (Megatron .bin/.idx, blend, tokenizer)
    <name>/manifests/<version>.json     one manifest per version: what makes a version visible

A version exists once its manifest does. The manifest is written to a temporary file and renamed
into place after every Delta commit and file it names, so a run killed at any point leaves the
earlier versions as they were and no half version; its Delta commits stay in the table history,
unreferenced (``vacuum`` can reclaim their files). Readers read a table at the Delta version a
manifest names (time travel), never "the latest". One writer per dataset name at a time.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import deltalake
import polars as pl
import pyarrow as pa

from pipeline.versions.manifest import Manifest, TableRef, file_sha256

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
PAUSE_ENV = "LOGOS_PAUSE_BEFORE_MANIFEST"  # seconds; lets tests kill a run between data and manifest


class DatasetNotFound(LookupError):
    pass


class DatasetStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def default(cls) -> DatasetStore:
        return cls(Path(os.environ.get("LOGOS_HOME", ".logos")) / "datasets")

    def dataset_dir(self, name: str) -> Path:
        if not NAME_PATTERN.match(name):
            raise ValueError(f"dataset name {name!r}: use letters, digits, '.', '_' or '-', not starting with a symbol")
        return self.root / name

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if any((p / "manifests").glob("*.json")))

    def versions(self, name: str) -> list[Manifest]:
        paths = sorted((self.dataset_dir(name) / "manifests").glob("*.json"))
        return sorted((Manifest.from_json(p.read_text()) for p in paths), key=lambda m: (m.created, m.version))

    def find(self, name: str, version: str) -> Manifest | None:
        path = self.dataset_dir(name) / "manifests" / f"{version}.json"
        return Manifest.from_json(path.read_text()) if path.is_file() else None

    def manifest(self, ref: str) -> Manifest:
        """``NAME`` (latest), ``NAME@latest`` or ``NAME@VERSION`` (a unique prefix of the id is enough)."""
        name, _, version = ref.partition("@")
        versions = self.versions(name)
        if not versions:
            raise DatasetNotFound(f"no dataset {name!r} in {self.root} (have: {', '.join(self.names()) or 'none'})")
        if version in ("", "latest"):
            return versions[-1]
        matches = [m for m in versions if m.version.startswith(version)]
        if len(matches) != 1:
            known = ", ".join(m.version for m in versions)
            raise DatasetNotFound(f"{ref}: {len(matches)} versions match (known: {known})")
        return matches[0]

    def table_uri(self, table: TableRef) -> str:
        return str(self.root / table.path)

    def scan(self, manifest: Manifest, table: str = "records") -> pl.LazyFrame:
        if table not in manifest.tables:
            raise KeyError(f"{manifest.ref} has no {table!r} table (has: {', '.join(manifest.tables)})")
        return self.scan_ref(manifest.tables[table])

    def scan_ref(self, ref: TableRef) -> pl.LazyFrame:
        return pl.scan_delta(self.table_uri(ref), version=ref.delta_version)

    def read(self, manifest: Manifest, table: str = "records") -> pl.DataFrame:
        return self.scan(manifest, table).collect()

    def table_files(self, manifest: Manifest, table: str = "records") -> list[str]:
        """The Parquet files of a table at the manifest's Delta version (for streaming readers)."""
        ref = manifest.tables[table]
        return deltalake.DeltaTable(self.table_uri(ref), version=ref.delta_version).file_uris()

    def write_table(self, name: str, table: str, data: pl.DataFrame | pa.Table | pa.RecordBatchReader) -> TableRef:
        """One Delta commit replacing the table's content (earlier versions stay readable); a
        ``RecordBatchReader`` is written as it streams."""
        relative = f"{name}/tables/{table}"
        arrow = data.to_arrow() if isinstance(data, pl.DataFrame) else data
        uri = str(self.root / relative)
        deltalake.write_deltalake(uri, arrow, mode="overwrite", schema_mode="overwrite")
        return TableRef(relative, deltalake.DeltaTable(uri).version())

    def staging_dir(self, name: str, version: str) -> Path:
        """A fresh private folder for a run's files; moved into place by ``register``."""
        path = self.dataset_dir(name) / "files" / f".staging-{version}-{os.getpid()}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def register(self, manifest: Manifest, staged_files: Path | None = None) -> Manifest:
        """Move staged files into place, checksum them, then publish the manifest atomically."""
        directory = self.dataset_dir(manifest.name)
        files: dict[str, str] = {}
        if staged_files is not None:
            final = directory / "files" / manifest.version
            shutil.rmtree(final, ignore_errors=True)  # a killed earlier run of this same version
            staged_files.rename(final)
            for path in sorted(p for p in final.rglob("*") if p.is_file()):
                files[str(path.relative_to(self.root))] = file_sha256(path)
        manifest = replace(manifest, files=files | manifest.files)
        pause = float(os.environ.get(PAUSE_ENV, "0") or 0)
        if pause:
            print(f"data written for {manifest.ref}; pausing {pause}s before the manifest", file=sys.stderr, flush=True)
            time.sleep(pause)
        manifests = directory / "manifests"
        manifests.mkdir(parents=True, exist_ok=True)
        temporary = manifests / f".{manifest.version}.{os.getpid()}.tmp"
        with temporary.open("w") as handle:
            handle.write(manifest.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, manifests / f"{manifest.version}.json")
        return manifest
