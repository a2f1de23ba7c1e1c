"""Partitions of a records table for the split and export tasks: row ranges of its Parquet files.

A partition is a list of segments (a file, a first row, a row count), consecutive in the order the table is
read (``DatasetStore.table_files``: the order ``pl.scan_delta`` reads them), holding at most ``rows`` rows: small
files are grouped into one partition, a big file is cut into several. The plan depends only on the files and
``rows``, never on how many workers run it, so the bytes a stage writes never depend on the workers. Each task
reads its own segments (only the columns it needs) from the files themselves, locally or on object storage,
so the driver ships file names and row numbers, never records.

Why row ranges and not one partition per file: a Delta table written by delta-rs holds up to ~100 MB per file
(one file for 1.5M molecule records), which would leave one task per stage; ingest shards are the other way
round (~12k rows each), which would make a task per few milliseconds of work.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import polars as pl

FOOTER_THREADS = 16
Storage = dict[str, str] | None  # ``storage_options`` as polars and delta-rs name them (None: local files)


@dataclass(frozen=True)
class Segment:
    """Rows ``offset .. offset + rows`` of one Parquet file."""

    file: str
    offset: int
    rows: int


Partition = tuple[Segment, ...]


def file_rows(file: str, storage: Storage = None) -> int:
    """Rows in a Parquet file, from its footer."""
    return int(pl.scan_parquet(file, storage_options=storage).select(pl.len()).collect().item())


def plan_partitions(files: Sequence[str], rows: int, storage: Storage = None,
                    counts: Sequence[int] | None = None) -> list[Partition]:
    """Consecutive row ranges of ``files`` (in this order) of at most ``rows`` rows each; ``counts``: the files'
    row counts when known (a Delta table's add actions), else read from the footers."""
    if rows < 1:
        raise ValueError(f"partition rows must be positive, got {rows}")
    if counts is None:  # footers read side by side: on object storage each is a request
        with ThreadPoolExecutor(max_workers=FOOTER_THREADS) as pool:
            counts = list(pool.map(lambda f: file_rows(f, storage), files))
    sizes = list(counts)
    partitions: list[Partition] = []
    current: list[Segment] = []
    room = rows
    for file, size in zip(files, sizes, strict=True):
        offset = 0
        while offset < size:
            take = min(room, size - offset)
            current.append(Segment(file, offset, take))
            offset += take
            room -= take
            if room == 0:
                partitions.append(tuple(current))
                current, room = [], rows
    if current:
        partitions.append(tuple(current))
    return partitions


def scan_segment(segment: Segment, storage: Storage = None) -> pl.LazyFrame:
    return pl.scan_parquet(segment.file, storage_options=storage).slice(segment.offset, segment.rows)


def read_partition(partition: Partition, columns: Sequence[str], storage: Storage = None,
                   optional: Sequence[str] = ()) -> pl.DataFrame:
    """The partition's rows, ``columns`` (all required) and those of ``optional`` its files have."""
    frames = []
    for segment in partition:
        scan = scan_segment(segment, storage)
        present = set(scan.collect_schema().names())
        frames.append(scan.select([*columns, *(c for c in optional if c in present)]).collect())
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def as_json(partitions: Sequence[Partition], relative_to: str) -> list[list[list[Any]]]:
    """The plan as manifest data: each segment ``[file relative to relative_to, offset, rows]``."""
    prefix = relative_to.rstrip("/") + "/"
    outside = [s.file for partition in partitions for s in partition if not s.file.startswith(prefix)]
    if outside:
        raise ValueError(f"partition file {outside[0]} is not under {prefix}")
    return [[[s.file.removeprefix(prefix), s.offset, s.rows] for s in partition] for partition in partitions]


def from_json(raw: Sequence[Sequence[Sequence[Any]]], relative_to: str) -> list[Partition]:
    prefix = relative_to.rstrip("/") + "/"
    return [tuple(Segment(prefix + str(f), int(o), int(n)) for f, o, n in partition) for partition in raw]
