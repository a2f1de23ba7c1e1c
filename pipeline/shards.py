"""Writing and reading Parquet shards through fsspec, with deterministic part names.

Column settings of every part (``parquet_options``), measured on real shards of every domain (2026-11-30: the
records parts of the SMILES, USPTO, PDB, crystal, UniProt and OAS inputs of ``benchmarks/bench_ingest.py``
re-written with each setting; every domain's part got both faster to write and smaller):

- ``input_ids`` values (list<int32>, the schema is unchanged) are BYTE_STREAM_SPLIT-encoded, without dictionary or
  statistics. Token ids are small integers, so the split puts their zero high bytes in streams zstd all but erases:
  UniProt parts wrote the column in 1.8 us a record instead of 3.3 us and 178 instead of 198 bytes (dictionary
  encoding hashed every token; min/max of token ids serve no reader). DELTA_BINARY_PACKED was slower and up to
  1.5x larger (PDB, USPTO). Readers need Parquet 2.11's integer BYTE_STREAM_SPLIT: pyarrow >= 16, polars, deltalake
  (arrow-rs) and DuckDB 2.0 read it (checked); DuckDB releases before 2026 do not.
- the columns unique per row (``content_id``, ``source_id``, ``text``, ``dedup_key``, ``metadata``) skip the
  dictionary, which Arrow builds, finds too large and abandons; ``text`` also skips statistics (its min/max are
  whole records, stored twice per column chunk: 14% of an antibody part).
- the repetitive columns (source, domain, task, URI, split group, n_tokens) keep the dictionary and statistics.

UniProt parts: 5.1 -> 3.3 us a record for the whole write, 458 -> 431 bytes a record; SMILES, USPTO, PDB and
crystal parts 0.76-0.87x the write time and 0.80-0.93x the bytes; the 5-row OAS part 0.98x the time (its fixed
per-file cost), 0.84x the bytes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

TOKEN_IDS = "input_ids"
UNIQUE_PER_ROW = frozenset({"content_id", "source_id", "text", "dedup_key", "metadata"})  # no dictionary
NO_STATISTICS = frozenset({TOKEN_IDS, "text"})


@lru_cache(maxsize=32)
def parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """``pq.write_table``/``ParquetWriter`` keyword arguments for a shard of ``schema`` (module docstring). Arrow
    takes per-column settings by Parquet leaf path (``input_ids.list.element``), read here from the schema Parquet
    itself makes of ``schema``; a column of another schema (rejects) keeps Arrow's defaults."""
    buffer = io.BytesIO()
    pq.write_table(schema.empty_table(), buffer)
    leaves = [column.path for column in pq.read_metadata(io.BytesIO(buffer.getvalue())).schema]
    top = {leaf: leaf.split(".", 1)[0] for leaf in leaves}
    ids = pa.types.is_list(schema.field(TOKEN_IDS).type) if TOKEN_IDS in schema.names else False
    encodings = {leaf: "BYTE_STREAM_SPLIT" for leaf in leaves if ids and top[leaf] == TOKEN_IDS}
    return {
        "compression": "zstd",
        "use_dictionary": [leaf for leaf in leaves if top[leaf] not in UNIQUE_PER_ROW and leaf not in encodings],
        "write_statistics": [leaf for leaf in leaves if top[leaf] not in NO_STATISTICS],
        "column_encoding": encodings or None,
    }


def part_name(file_index: int, chunk_index: int) -> str:
    return f"part-{file_index:06d}-{chunk_index:06d}.parquet"


def write_rows(rows: list[dict[str, Any]], schema: pa.Schema, uri: str, storage_options: dict | None = None) -> None:
    """One Parquet part. A plain local path is written by Arrow directly (as ``pipeline.io`` reads one): fsspec's
    URL handling costs ~0.3 ms a part, and a PDB or crystal chunk is one file's entries."""
    write_table(pa.Table.from_pylist(rows, schema=schema), uri, storage_options)


def write_table(table: pa.Table, uri: str, storage_options: dict | None = None) -> None:
    """One Parquet part from an Arrow table (see ``write_rows``)."""
    options = parquet_options(table.schema)
    if "://" not in uri and "::" not in uri and not storage_options:
        pq.write_table(table, os.path.expanduser(uri), **options)
        return
    with fsspec.open(uri, "wb", **(storage_options or {})) as handle:
        pq.write_table(table, handle, **options)


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
