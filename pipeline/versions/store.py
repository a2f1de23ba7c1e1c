"""The dataset store: Delta tables per dataset, one manifest per version, written last and atomically.

The root is a local folder or any fsspec URI (``s3://bucket/prefix``; ``AWS_ENDPOINT_URL`` and the
credentials come from the environment or a named profile, or from ``storage_options``, which are
never written anywhere). Layout under the root (``$LOGOS_HOME/datasets``, default ``./.logos/datasets``)::

    <name>/tables/<table>/              Delta tables (records, duplicates, rejects, excluded)
    <name>/files/<version>/             exported files (Megatron .bin/.idx, blend, tokenizer)
    <name>/manifests/<version>.json     one manifest per version: what makes a version visible
    .tokenizers/<hash>/                 the tokenizer each version's ids came from (by content hash)

A version exists once its manifest does. The manifest is written after every Delta commit and file it
names, in one atomic step (locally a temporary file renamed into place; on object storage a single PUT,
which S3 makes visible whole or not at all), so a run killed at any point leaves the earlier versions as
they were and no half version; its Delta commits stay in the table history, unreferenced (``vacuum`` can
reclaim their files). Readers read a table at the Delta version a manifest names (time travel), never
"the latest". One writer per dataset name at a time.

Delta on S3: deltalake >= 1.0 commits a table version with an S3 conditional write (``If-None-Match``),
so concurrent commits are safe without a locking provider (delta-rs 1.0 dropped the DynamoDB lock);
an ``http://`` endpoint (moto, MinIO on a laptop) needs ``AWS_ALLOW_HTTP``, set here from the endpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import deltalake
import polars as pl
import pyarrow as pa
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from pipeline.io import join_uri, local_copy, object_store_options
from pipeline.versions.manifest import Manifest, TableRef, file_sha256

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
PAUSE_ENV = "LOGOS_PAUSE_BEFORE_MANIFEST"  # seconds; lets tests kill a run between data and manifest
TOKENIZERS_DIR = ".tokenizers"
# zstd, the ingest shards' codec: Delta's default, snappy, stored the same records 1.5x larger.
WRITER_PROPERTIES = deltalake.WriterProperties(compression="ZSTD")
COMPLETE_MARKER = ".complete"  # written last into an uploaded folder: the folder is whole

class DatasetNotFound(LookupError):
    pass



def joined_assignments(records: pl.LazyFrame, added: pl.LazyFrame) -> pl.LazyFrame:
    """A split version's records: ``records`` joined with its ``assignments`` (or ``excluded``) on content_id, in
    the records' order. One row per content_id (a split writes its partitions' assignments separately; a
    content_id in two partitions has the same group and split in both), so the join keeps one row per record. A
    null stored ``group`` is the record's own ``split_group`` (``pipeline.split.stored_assignments`` does not
    store it twice); a content stored with and without its group (records with and without that column, in two
    partitions) keeps the group."""
    one_per_content = added.group_by("content_id").agg(pl.all().drop_nulls().first())
    joined = records.join(one_per_content, on="content_id", how="inner", maintain_order="left")
    if "split_group" in records.collect_schema().names():
        joined = joined.with_columns(group=pl.coalesce("group", "split_group"))
    return joined

class DatasetStore:
    def __init__(self, root: str | Path, storage_options: dict[str, Any] | None = None) -> None:
        text = str(root)
        self.storage_options = dict(storage_options or {})
        self.fs, base = url_to_fs(text, **self.storage_options)
        self.local = isinstance(self.fs, LocalFileSystem)
        # A local root stays a Path (local callers and tests join onto it); a remote one is its URI. Code that
        # may meet either uses ``uri``, ``files_path``, ``local_copy`` and ``tokenizer_dir``, never ``root /``.
        self.root: Path | str = Path(base).absolute() if self.local else text.rstrip("/")
        self._base = str(self.root) if self.local else base.rstrip("/")

    def __repr__(self) -> str:
        return f"DatasetStore({self.root!r})"

    @classmethod
    def default(cls) -> DatasetStore:
        return cls(join_uri(os.environ.get("LOGOS_HOME", ".logos"), "datasets"))

    # Locations ---------------------------------------------------------------------------------------

    def uri(self, *parts: str) -> str:
        """A location under the root (a local path or a URI), for readers and messages."""
        return join_uri(str(self.root), *parts)

    def _fs_path(self, *parts: str) -> str:
        return join_uri(self._base, *parts)

    def dataset_dir(self, name: str) -> Path | str:
        """The dataset's folder: a Path in a local store, a URI in a remote one."""
        if not NAME_PATTERN.match(name):
            raise ValueError(f"dataset name {name!r}: use letters, digits, '.', '_' or '-', not starting with a symbol")
        return Path(self.uri(name)) if self.local else self.uri(name)

    def files_path(self, name: str, version: str, *parts: str) -> str:
        """The root-relative path of a version's file (what a manifest's ``files`` and ``outputs`` name)."""
        self.dataset_dir(name)
        return "/".join([name, "files", version, *parts])

    def exists(self, relative: str) -> bool:
        return self.fs.exists(self._fs_path(relative))

    def local_copy(self, relative: str) -> Path:
        """A local path holding the stored file or folder ``relative``: itself in a local store; for a remote
        one a copy under ``$LOGOS_CACHE`` (fetched once: a stored version's files never change)."""
        return local_copy(self.uri(relative), self.storage_options)

    # Versions ----------------------------------------------------------------------------------------

    def names(self) -> list[str]:
        found = self.fs.glob(self._fs_path("*", "manifests", "*.json"))
        return sorted({p.rstrip("/").split("/")[-3] for p in found})

    def versions(self, name: str) -> list[Manifest]:
        self.dataset_dir(name)
        paths = sorted(self.fs.glob(self._fs_path(name, "manifests", "*.json")))
        manifests = (Manifest.from_json(self.fs.cat_file(p).decode()) for p in paths)
        return sorted(manifests, key=lambda m: (m.created, m.version))

    def find(self, name: str, version: str) -> Manifest | None:
        self.dataset_dir(name)
        try:
            return Manifest.from_json(self.fs.cat_file(self._fs_path(name, "manifests", f"{version}.json")).decode())
        except FileNotFoundError:
            return None

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

    # Tables ------------------------------------------------------------------------------------------

    def delta_options(self) -> dict[str, str] | None:
        """``storage_options`` as delta-rs and ``pl.scan_delta`` name them; None for a local store."""
        return object_store_options(str(self.root), self.storage_options)

    def table_uri(self, table: TableRef) -> str:
        return self.uri(table.path)

    def scan(self, manifest: Manifest, table: str = "records") -> pl.LazyFrame:
        """A table of a version as rows. A split version stores its records once: ``records`` is its input's
        table (a reference) and ``assignments``/``excluded`` hold ``content_id, group[, split]``; reading
        ``records`` or ``excluded`` joins them back onto the records (in the records' order)."""
        if table not in manifest.tables:
            raise KeyError(f"{manifest.ref} has no {table!r} table (has: {', '.join(manifest.tables)})")
        added = {"records": "assignments", "excluded": "excluded"}.get(table)
        if "assignments" not in manifest.tables or added is None:
            return self.scan_ref(manifest.tables[table])
        return joined_assignments(self.scan_ref(manifest.tables["records"]), self.scan_ref(manifest.tables[added]))

    def scan_ref(self, ref: TableRef) -> pl.LazyFrame:
        return pl.scan_delta(self.table_uri(ref), version=ref.delta_version, storage_options=self.delta_options())

    def read(self, manifest: Manifest, table: str = "records") -> pl.DataFrame:
        return self.scan(manifest, table).collect()

    def table_files(self, manifest: Manifest, table: str = "records") -> list[str]:
        """The Parquet files of a table at the manifest's Delta version (for streaming readers): local paths
        or URIs (read them with ``parquet_filesystem()``)."""
        ref = manifest.tables[table]
        return self._delta(ref.path, ref.delta_version).file_uris()

    def parquet_filesystem(self):
        """The fsspec filesystem (credentials included) that reads ``table_files``; None when local."""
        return None if self.local else self.fs

    def _delta(self, relative: str, version: int | None = None) -> deltalake.DeltaTable:
        return deltalake.DeltaTable(self.uri(relative), version=version, storage_options=self.delta_options())

    def write_table(self, name: str, table: str, data: pl.DataFrame | pa.Table | pa.RecordBatchReader) -> TableRef:
        """One Delta commit replacing the table's content (earlier versions stay readable); a
        ``RecordBatchReader`` is written as it streams."""
        self.dataset_dir(name)
        relative = f"{name}/tables/{table}"
        arrow = data.to_arrow() if isinstance(data, pl.DataFrame) else data
        deltalake.write_deltalake(self.uri(relative), arrow, mode="overwrite", schema_mode="overwrite",
                                  storage_options=self.delta_options(), writer_properties=WRITER_PROPERTIES)
        return TableRef(relative, self._delta(relative).version())

    def table_folder(self, name: str, table: str) -> tuple[Any, str]:
        """(fsspec filesystem, path on it) of a table's folder: where tasks write the Parquet files that
        ``commit_files`` then makes the table's content."""
        self.dataset_dir(name)
        return self.fs, self._fs_path(name, "tables", table)

    def commit_files(self, name: str, table: str, schema: pa.Schema, files: list[tuple[str, int, int]]) -> TableRef:
        """One Delta commit replacing the table's content with Parquet files already written into its folder
        (``table_folder``), each ``(file name, bytes, rows)``, in this order (the order readers read them). Until
        this commit the files belong to no table version: a killed stage leaves none."""
        from deltalake.transaction import AddAction, create_table_with_add_actions

        relative = f"{name}/tables/{table}"
        now = int(time.time() * 1000)
        actions = [AddAction(file, size, {}, now, True, json.dumps({"numRecords": rows})) for file, size, rows in files]
        create_table_with_add_actions(self.uri(relative), deltalake.Schema.from_arrow(schema), actions,
                                      mode="overwrite", storage_options=self.delta_options())
        return TableRef(relative, self._delta(relative).version())

    # Files and manifests -----------------------------------------------------------------------------

    def staging_dir(self, name: str, version: str) -> Path:
        """A fresh private LOCAL folder for a run's files; moved (or uploaded) into place by ``register``."""
        if not self.local:
            self.dataset_dir(name)
            return Path(tempfile.mkdtemp(prefix=f"logos-staging-{name}-{version}-"))
        path = Path(self.dataset_dir(name)) / "files" / f".staging-{version}-{os.getpid()}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def register(self, manifest: Manifest, staged_files: Path | None = None) -> Manifest:
        """Move (or upload) staged files into place, checksum them, then publish the manifest atomically."""
        files: dict[str, str] = {}
        if staged_files is not None:
            final = self.files_path(manifest.name, manifest.version)
            for path in sorted(p for p in staged_files.rglob("*") if p.is_file()):
                files[f"{final}/{path.relative_to(staged_files).as_posix()}"] = file_sha256(path)
            self._place(staged_files, final)
        manifest = replace(manifest, files=files | manifest.files)
        pause = float(os.environ.get(PAUSE_ENV, "0") or 0)
        if pause:
            print(f"data written for {manifest.ref}; pausing {pause}s before the manifest", file=sys.stderr, flush=True)
            time.sleep(pause)
        self._publish(self._fs_path(manifest.name, "manifests", f"{manifest.version}.json"), manifest.to_json())
        return manifest

    def _place(self, staged: Path, relative: str) -> None:
        """Put a local folder at ``relative`` (replacing what a killed earlier run of it left there)."""
        target = self._fs_path(relative)
        if self.fs.exists(target):
            self.fs.rm(target, recursive=True)
        if self.local:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            staged.rename(target)
            return
        self.fs.put(str(staged) + "/", target + "/", recursive=True)
        shutil.rmtree(staged, ignore_errors=True)

    def _publish(self, path: str, text: str) -> None:
        """Write a small file whole or not at all."""
        if not self.local:
            self.fs.pipe_file(path, text.encode())  # one PUT: an object is visible whole or not at all
            return
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        temporary = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        with temporary.open("w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)

    # Tokenizers --------------------------------------------------------------------------------------

    def tokenizer_dir(self, content_hash: str) -> Path | None:
        """A local folder holding the stored tokenizer with this content hash; None when not stored."""
        relative = f"{TOKENIZERS_DIR}/{content_hash.removeprefix('sha256:')}"
        if self.local:
            path = Path(self._fs_path(relative))
            return path if path.is_dir() else None
        if not self.fs.exists(self._fs_path(relative, COMPLETE_MARKER)):
            return None
        return self.local_copy(relative)

    def keep_tokenizer(self, content_hash: str, local_dir: Path) -> None:
        """Store the tokenizer saved in ``local_dir`` under its hash, once (whole or not at all)."""
        if self.tokenizer_dir(content_hash) is not None:
            return
        relative = f"{TOKENIZERS_DIR}/{content_hash.removeprefix('sha256:')}"
        if self.local:
            target = Path(self._fs_path(relative))
            staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(local_dir, staging)
            try:
                staging.rename(target)
            except OSError:  # another process stored it first
                shutil.rmtree(staging, ignore_errors=True)
            return
        self.fs.put(str(local_dir) + "/", self._fs_path(relative) + "/", recursive=True)
        self.fs.pipe_file(self._fs_path(relative, COMPLETE_MARKER), b"")
