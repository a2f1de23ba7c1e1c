"""Writing and reading Parquet shards through fsspec, with deterministic part names."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs


def part_name(file_index: int, chunk_index: int) -> str:
    return f"part-{file_index:06d}-{chunk_index:06d}.parquet"


def write_rows(rows: list[dict[str, Any]], schema: pa.Schema, uri: str, storage_options: dict | None = None) -> None:
    """One Parquet part. A plain local path is written by Arrow directly (as ``pipeline.io`` reads one): fsspec's
    URL handling costs ~0.3 ms a part, and a PDB or crystal chunk is one file's entries."""
    write_table(pa.Table.from_pylist(rows, schema=schema), uri, storage_options)


def write_table(table: pa.Table, uri: str, storage_options: dict | None = None) -> None:
    """One Parquet part from an Arrow table (see ``write_rows``)."""
    if "://" not in uri and "::" not in uri and not storage_options:
        pq.write_table(table, os.path.expanduser(uri), compression="zstd")
        return
    with fsspec.open(uri, "wb", **(storage_options or {})) as handle:
        pq.write_table(table, handle, compression="zstd")


def reset_dir(uri: str, storage_options: dict | None = None) -> None:
    """Remove a previous run's parts so a re-run never mixes old and new shards."""
    fs, path = url_to_fs(uri, **(storage_options or {}))
    if fs.exists(path):
        fs.rm(path, recursive=True)
    fs.makedirs(path, exist_ok=True)


def read_table(uris: Iterable[str] | str, storage_options: dict | None = None) -> pa.Table:
    """All parts under a directory (or the given files) as one table, in part-name order."""
    if isinstance(uris, str):
        fs, path = url_to_fs(uris, **(storage_options or {}))
        files = sorted(p for p in fs.find(path) if p.endswith(".parquet")) if fs.isdir(path) else [path]
    else:
        fs, _ = url_to_fs(next(iter(uris)), **(storage_options or {}))
        files = [url_to_fs(u)[1] for u in uris]
    tables = [pq.read_table(f, filesystem=fs) for f in files]
    return pa.concat_tables(tables) if tables else pa.table({})
