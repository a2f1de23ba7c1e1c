"""Exact deduplication on canonical keys, with a documented, deterministic kept-record rule.

Keys are written by the sources into ``dedup_key`` (see ``pipeline.records.dedup_key``): molecules by
canonical isomeric SMILES (their text; InChIKey with ``molecule_key=inchikey``), proteins by chain sequences,
complexes by (sequences, ligand InChIKey, pocket), reactions by canonical unmapped 'reactants>>products'.
Records are compared within one task only: a reaction's ``react`` and ``reverse_react`` samples are
two training views of one reaction, not duplicates (the split stage keeps them in one split). A
record with an empty key falls back to its ``content_id`` (exact text).

Crystals carry a *group* key, (reduced formula, space group); inside a group, records are matched
with the format's ``same`` (a pymatgen ``StructureMatcher``), greedily in kept-rule order: each record
is a duplicate of the first earlier-ranked representative it matches.

Kept-record rule: among duplicates, keep the record ranked first by (position of its source in
``source_priority``, unlisted sources after listed ones; then ``content_id``, ``source``,
``source_id``, ``source_uri``). Every other record becomes a row of the duplicates table naming the
record it duplicated. ``exact_dedup_files`` applies the same rule to Parquet files with flat memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.shards import parquet_options

MATERIAL_GROUP_PREFIX = "material:"
IS_GROUP = pl.col("dedup_key").str.starts_with(MATERIAL_GROUP_PREFIX)
RANK_COLUMNS = ("_rank", "content_id", "source", "source_id", "source_uri")
KEEP_COLUMNS = ("content_id", "source", "source_id")  # how a duplicate names its kept record

DUPLICATE_SCHEMA = pa.schema(
    [
        ("content_id", pa.string()),
        ("source", pa.string()),
        ("source_id", pa.string()),
        ("domain", pa.string()),
        ("task", pa.string()),
        ("duplicate_of", pa.string()),  # content_id of the kept record
        ("duplicate_of_source", pa.string()),
        ("duplicate_of_source_id", pa.string()),
        ("reason", pa.string()),  # "exact" | "near"
        ("key", pa.string()),  # the dedup key (exact) or the kept record's content_id (near)
        ("similarity", pa.float64()),  # estimated Jaccard for near duplicates; 1.0 for exact
    ]
)


@dataclass(frozen=True)
class ExactDedupConfig:
    source_priority: tuple[str, ...] = ()  # sources listed first win ties; see the module docstring
    match_structures: bool = True  # StructureMatcher inside crystal groups (else the group key decides)


@dataclass
class DedupResult:
    kept: pl.DataFrame  # the input's columns, sorted by (content_id, source, source_id)
    duplicates: pl.DataFrame = field(default_factory=lambda: empty_duplicates())

    def counts(self) -> dict[str, int]:
        reasons = self.duplicates["reason"].value_counts()
        return {r: int(n) for r, n in reasons.iter_rows()}


def empty_duplicates() -> pl.DataFrame:
    return pl.from_arrow(DUPLICATE_SCHEMA.empty_table())


def as_frame(records: pl.DataFrame | pa.Table) -> pl.DataFrame:
    return records if isinstance(records, pl.DataFrame) else pl.from_arrow(records)


def with_rank(records: pl.DataFrame, source_priority: tuple[str, ...]) -> pl.DataFrame:
    """Add ``_rank``: a source's position in the priority list, unlisted sources after all listed."""
    positions = {source: i for i, source in enumerate(source_priority)}
    rank = pl.col("source").replace_strict(positions, default=len(positions), return_dtype=pl.Int32)
    return records.with_columns(_rank=rank)


def exact_key() -> pl.Expr:
    key = pl.when(pl.col("dedup_key") == "").then(pl.col("content_id")).otherwise(pl.col("dedup_key"))
    return pl.concat_str(pl.col("task"), pl.lit("\x00"), key)


def sorted_output(records: pl.DataFrame) -> pl.DataFrame:
    return records.sort(["content_id", "source", "source_id", "source_uri"])


def duplicate_rows(dropped: pl.DataFrame, reason: str, key: pl.Expr, similarity: pl.Expr) -> pl.DataFrame:
    """Duplicates-table rows from records that carry ``_keep_*`` columns naming their kept record."""
    return dropped.select(
        "content_id", "source", "source_id", "domain", "task",
        duplicate_of=pl.col("_keep_content_id"),
        duplicate_of_source=pl.col("_keep_source"),
        duplicate_of_source_id=pl.col("_keep_source_id"),
        reason=pl.lit(reason),
        key=key,
        similarity=similarity.cast(pl.Float64),
    )


def mark_first(frame: pl.DataFrame) -> pl.DataFrame:
    """Sort by key then rank; ``_first`` marks the kept record, ``_keep_*`` name it on every row."""
    frame = frame.with_columns(_key=exact_key()).sort(["_key", *RANK_COLUMNS])
    # Sorted by key, so a group starts where the key changes (cheaper than window expressions).
    frame = frame.with_columns(_first=(pl.col("_key") != pl.col("_key").shift(1)).fill_null(True))
    keep = {f"_keep_{c}": pl.when("_first").then(pl.col(c)).forward_fill() for c in KEEP_COLUMNS}
    return frame.with_columns(**keep)


def exact_dedup(config: ExactDedupConfig, records: pl.DataFrame | pa.Table) -> DedupResult:
    frame = as_frame(records).with_row_index("_row")
    # Decide on the small key columns only; the heavy ones (text, token ids) move once, at the end.
    keys = frame.select("_row", "content_id", "source", "source_id", "source_uri", "domain", "task", "dedup_key")
    decided = mark_first(with_rank(keys, config.source_priority))
    if config.match_structures and decided.filter(IS_GROUP & ~pl.col("_first")).height:
        decided = match_structure_groups(decided, frame.select("_row", "text"))
    kept = frame.filter(pl.col("_row").is_in(decided.filter(pl.col("_first"))["_row"].implode())).drop("_row")
    duplicates = duplicate_rows(decided.filter(~pl.col("_first")), "exact", pl.col("dedup_key"), pl.lit(1.0))
    return DedupResult(sorted_output(kept), duplicates.sort("content_id", "source", "source_id"))


def match_structure_groups(frame: pl.DataFrame, texts: pl.DataFrame, on: str = "_row") -> pl.DataFrame:
    """Inside each crystal group, keep one record per StructureMatcher class (greedy, in rank order).
    ``texts`` holds the grammar text of the rows, joined on the row id column ``on``."""
    from grammar.formats import FORMATS  # imports pymatgen: only when crystals are present

    members = frame.filter(IS_GROUP).join(texts, on=on, maintain_order="left")
    groups = members.partition_by("_key", maintain_order=True)
    updates = []
    for group in groups:
        representatives: list[tuple[dict, object]] = []
        for row in group.iter_rows(named=True):
            fmt = FORMATS[row["task"]]
            structure = fmt.parse(row["text"])
            match = next((rep for rep, obj in representatives if fmt.same(obj, structure)), None)
            if match is None:
                representatives.append((row, structure))
                match = row
            updates.append(
                {on: row[on], "_m_first": match is row,
                 "_m_cid": match["content_id"], "_m_src": match["source"], "_m_sid": match["source_id"]}
            )
    update_frame = pl.DataFrame(updates, schema_overrides={on: frame.schema[on]})
    joined = frame.join(update_frame, on=on, how="left")
    matched = pl.col("_m_first").is_not_null()
    return joined.with_columns(
        _first=pl.when(matched).then(pl.col("_m_first")).otherwise(pl.col("_first")),
        _keep_content_id=pl.when(matched).then(pl.col("_m_cid")).otherwise(pl.col("_keep_content_id")),
        _keep_source=pl.when(matched).then(pl.col("_m_src")).otherwise(pl.col("_keep_source")),
        _keep_source_id=pl.when(matched).then(pl.col("_m_sid")).otherwise(pl.col("_keep_source_id")),
    ).drop("_m_first", "_m_cid", "_m_src", "_m_sid")


# --- Streaming path for inputs larger than memory -----------------------------------------------------
STREAM_COLUMNS = ["content_id", "source", "source_id", "source_uri", "domain", "task", "dedup_key", "text"]


@dataclass(frozen=True)
class StreamingConfig:
    batch_rows: int = 100_000  # rows read at a time in passes 1 and 3
    bucket_rows: int = 100_000  # target rows per hash bucket: bounds the memory of pass 2; the unit of Ray work
    # Ray tasks for the three passes (None: in process; the same records). The tasks write the stage's
    # staging folder themselves: on a cluster of several machines that folder must be on a shared filesystem.
    workers: int | None = None


@dataclass
class StreamedDedup:
    kept_files: list[Path]
    duplicates_file: Path
    rows_in: int
    rows_kept: int


def exact_dedup_files(
    config: ExactDedupConfig, paths: list[str | Path], out_dir: str | Path, stream: StreamingConfig = StreamingConfig(),
    workers: int | None = None,
) -> StreamedDedup:
    """The same rule as ``exact_dedup`` over Parquet files, in three streaming passes.

    1. read only the key columns in batches and hash-partition them by key into buckets;
    2. dedup each bucket independently (a bucket holds every record of its keys), write the duplicates;
    3. re-read each input in batches and write the rows not listed as duplicates (input order kept).
    Peak memory is one batch plus one bucket, whatever the input size, since the number of buckets
    grows with the input. Pass 1 keeps the text of crystals only, for the StructureMatcher in pass 2.

    ``workers=None`` runs the passes in this process (buckets on disk). ``workers=N`` runs them as plain Ray
    tasks, N CPUs: one task per input file in passes 1 and 3, one per bucket in pass 2; the buckets travel
    through Ray's object store (spilled to disk when it fills), so the driver holds object references and
    the duplicates table, never records. Plain tasks rather than Ray Data because the work is a fixed
    map (files) -> reduce (buckets) -> map (files) with no per-row operator to pipeline; a hash shuffle in
    Ray Data (``groupby``) would sort whole rows. Each bucket is decided by the same ``bucket_duplicates``
    on the same rows in the same order as in process, so the kept records and duplicates are identical.
    Pass 3 tasks write ``out_dir`` themselves: on a multi-node cluster it must be a shared path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [str(p) for p in paths]
    rows_in = sum(pq.read_metadata(f).num_rows for f in files)
    n_buckets = max(1, math.ceil(rows_in / stream.bucket_rows))
    duplicates_file = out / "duplicates.parquet"
    if workers is None:
        dropped = local_duplicates(config, files, out, n_buckets, stream.batch_rows)
    else:
        dropped = ray_duplicates(config, files, n_buckets, stream.batch_rows, workers)
    with pq.ParquetWriter(duplicates_file, DUPLICATES_WITH_ROWS) as writer:
        for table in dropped:
            writer.write_table(table)
    if workers is None:
        kept_files, rows_kept = write_kept(files, duplicates_file, out, stream.batch_rows)
    else:
        kept_files, rows_kept = ray_write_kept(files, duplicates_file, out, stream.batch_rows, workers)
    return StreamedDedup(kept_files, duplicates_file, rows_in, rows_kept)


DUPLICATES_WITH_ROWS = DUPLICATE_SCHEMA.append(pa.field("_file", pa.int32())).append(pa.field("_row", pa.int64()))


def bucket_duplicates(config: ExactDedupConfig, bucket: pl.DataFrame) -> pa.Table:
    """Pass 2 on one bucket: its duplicates rows (with ``_file``, ``_row``), by the kept-record rule."""
    bucket = bucket.with_row_index("_uid")
    frame = mark_first(bucket.drop("text"))
    if config.match_structures and frame.filter(IS_GROUP & ~pl.col("_first")).height:
        frame = match_structure_groups(frame, bucket.select("_uid", "text"), on="_uid")
    dropped = frame.filter(~pl.col("_first"))
    rows = duplicate_rows(dropped, "exact", pl.col("dedup_key"), pl.lit(1.0))
    rows = rows.with_columns(_file=dropped["_file"], _row=dropped["_row"])
    return rows.to_arrow().cast(DUPLICATES_WITH_ROWS)


def local_duplicates(
    config: ExactDedupConfig, files: list[str], out: Path, n_buckets: int, batch_rows: int
) -> Iterator[pa.Table]:
    work = out / "_buckets"
    work.mkdir(parents=True, exist_ok=True)
    for bucket_path in partition_keys(config, files, work, n_buckets, batch_rows):
        yield bucket_duplicates(config, pl.read_parquet(bucket_path))
        bucket_path.unlink()
    work.rmdir()


def file_key_buckets(
    config: ExactDedupConfig, path: str, file_index: int, n_buckets: int, batch_rows: int
) -> list[pa.Table]:
    """Pass 1 on one file: its key rows, one table per bucket (empty where none)."""
    pieces: list[list[pa.Table]] = [[] for _ in range(n_buckets)]
    offset = 0
    for batch in read_batches(path, batch_rows, STREAM_COLUMNS):
        for b, table in key_parts(config, batch, file_index, offset, n_buckets):
            pieces[b].append(table)
        offset += batch.num_rows
    schema = key_schema(path)
    return [pa.concat_tables(p).cast(schema) if p else schema.empty_table() for p in pieces]


def key_schema(path: str) -> pa.Schema:
    empty = pl.from_arrow(pq.read_schema(path).empty_table()).select(STREAM_COLUMNS)
    frame = with_rank(empty, ()).with_columns(_file=pl.lit(0, pl.Int32), _row=pl.lit(0, pl.Int64),
                                              text=pl.col("text"))
    return frame.to_arrow().schema


def key_parts(
    config: ExactDedupConfig, batch: pa.RecordBatch, file_index: int, offset: int, n_buckets: int
) -> Iterator[tuple[int, pa.Table]]:
    """One batch's key rows (text kept for crystals only: the StructureMatcher needs it), by bucket."""
    rows = pl.int_range(offset, offset + batch.num_rows, dtype=pl.Int64)
    frame = with_rank(pl.from_arrow(batch), config.source_priority).with_columns(
        _file=pl.lit(file_index, pl.Int32), _row=rows, text=pl.when(IS_GROUP).then(pl.col("text"))
    )
    bucket = exact_key().hash(seed=0) % n_buckets
    for (b,), part in frame.with_columns(_bucket=bucket).partition_by("_bucket", as_dict=True).items():
        yield int(b), part.drop("_bucket").to_arrow()


def ray_duplicates(
    config: ExactDedupConfig, files: list[str], n_buckets: int, batch_rows: int, workers: int
) -> Iterator[pa.Table]:
    import ray

    from pipeline.partition_tasks import TASK_RUNTIME_ENV, partition_result
    from pipeline.ray_runtime import ray_session

    with ray_session(num_cpus=workers):
        # One object per bucket (with num_returns=1 Ray would return the one-table list as one object).
        split_task = ray.remote(num_cpus=1, max_retries=3, num_returns=n_buckets,
                                runtime_env=TASK_RUNTIME_ENV)(_file_key_buckets)
        decide_task = ray.remote(num_cpus=1, max_retries=3, runtime_env=TASK_RUNTIME_ENV)(_decide_bucket)
        by_file = [split_task.remote(config, path, i, n_buckets, batch_rows) for i, path in enumerate(files)]
        by_file = [refs if n_buckets > 1 else [refs] for refs in by_file]
        decided = [decide_task.remote(config, *(refs[b] for refs in by_file)) for b in range(n_buckets)]
        del by_file  # the buckets are freed once their task has run
        for bucket, ref in enumerate(decided):  # a worker that died beyond the retries: one line naming the bucket
            yield partition_result("dedup", bucket, ref, lambda b: f"hash bucket {b} of {n_buckets}, all input files")


def _file_key_buckets(
    config: ExactDedupConfig, path: str, file_index: int, n_buckets: int, batch_rows: int
) -> list[pa.Table] | pa.Table:
    buckets = file_key_buckets(config, path, file_index, n_buckets, batch_rows)
    return buckets if n_buckets > 1 else buckets[0]


def _decide_bucket(config: ExactDedupConfig, *pieces: pa.Table) -> pa.Table:
    """Pass 2 on Ray: a bucket's pieces from every file, in file order (the order the local path writes)."""
    bucket = pa.concat_tables(pieces)
    if bucket.num_rows == 0:
        return DUPLICATES_WITH_ROWS.empty_table()
    return bucket_duplicates(config, pl.from_arrow(bucket))


def ray_write_kept(
    files: list[str], duplicates_file: Path, out: Path, batch_rows: int, workers: int
) -> tuple[list[Path], int]:
    from pipeline.partition_tasks import ordered_results
    from pipeline.ray_runtime import ray_session

    duplicates = pl.scan_parquet(duplicates_file).select("_file", "_row")
    with ray_session(num_cpus=workers):
        calls = [(source, np.sort(duplicates.filter(pl.col("_file") == i).collect()["_row"].to_numpy()),
                  out / f"kept-{i:05d}.parquet", batch_rows) for i, source in enumerate(files)]
        kept = list(ordered_results("dedup", write_kept_file, calls,
                                    describe=lambda i: str(files[i]).rsplit("/", 1)[-1]))
    return [out / f"kept-{i:05d}.parquet" for i in range(len(files))], sum(kept)


def read_batches(path: str, batch_rows: int, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Batches of one file, the file closed afterwards: an open reader keeps its last row group's
    buffers, so holding every input open made memory grow with the number of files."""
    with pq.ParquetFile(path) as parquet:
        yield from parquet.iter_batches(batch_size=batch_rows, columns=columns)


def partition_keys(
    config: ExactDedupConfig, files: list[str], work: Path, n_buckets: int, batch_rows: int
) -> list[Path]:
    paths = [work / f"bucket-{b:05d}.parquet" for b in range(n_buckets)]
    writers: dict[int, pq.ParquetWriter] = {}
    try:
        for file_index, path in enumerate(files):
            offset = 0
            for batch in read_batches(path, batch_rows, STREAM_COLUMNS):
                for b, table in key_parts(config, batch, file_index, offset, n_buckets):
                    if b not in writers:
                        writers[b] = pq.ParquetWriter(paths[b], table.schema)
                    writers[b].write_table(table)
                offset += batch.num_rows
    finally:
        for writer in writers.values():
            writer.close()
    return [paths[b] for b in sorted(writers)]


def write_kept(
    files: list[str], duplicates_file: Path, out: Path, batch_rows: int
) -> tuple[list[Path], int]:
    kept_files, rows_kept = [], 0
    duplicates = pl.scan_parquet(duplicates_file).select("_file", "_row")
    for file_index, source in enumerate(files):
        drop = np.sort(duplicates.filter(pl.col("_file") == file_index).collect()["_row"].to_numpy())
        path = out / f"kept-{file_index:05d}.parquet"
        rows_kept += write_kept_file(source, drop, path, batch_rows)
        kept_files.append(path)
    return kept_files, rows_kept


def write_kept_file(source: str, drop: np.ndarray, path: Path, batch_rows: int) -> int:
    """Pass 3 on one file: its rows not in ``drop`` (sorted row numbers), in input order; rows written."""
    rows_kept = 0
    schema = pq.read_schema(source)
    with pq.ParquetWriter(path, schema, **parquet_options(schema)) as writer:  # as ingest writes shards
        offset = 0
        for batch in read_batches(source, batch_rows):
            rows = np.arange(offset, offset + batch.num_rows)
            position = np.minimum(np.searchsorted(drop, rows), max(len(drop) - 1, 0))
            keep = drop[position] != rows if len(drop) else np.ones(len(rows), dtype=bool)
            writer.write_batch(batch.filter(pa.array(keep)))
            rows_kept += int(keep.sum())
            offset += batch.num_rows
    return rows_kept
