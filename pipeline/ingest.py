"""The ingest stage: source files -> tokenized Parquet shards + rejects, in parallel on Ray Data.

Plan: one row per *read group* (``FILES_PER_READ`` consecutive input files) -> a read step streams the
group's files into chunks of items (bounded memory; a chunk may span files, so one-entry files such as PDB
entries do not each become a Parquet part; a file that breaks mid-way becomes a reject for its remainder)
-> an actor pool converts and tokenizes chunks (each actor keeps its source's caches, e.g. the CCD) and
writes one records part and one rejects part per chunk, named by (group, chunk) so output is
deterministic and, read in part-name order, in input-file order -> the driver adds up the per-chunk
accounting and writes ``summary.json`` last, as the marker of a finished run.

The tokenizer is the dataset's: ``tokenizer`` names a saved tokenizer directory of either kind
(``grammar.tokenizer.load_tokenizer``; default: the built-in native vocabulary). The driver loads it
before any work (a bad directory fails the run up front) and hands the loaded tokenizer to the
converter actors (so remote nodes need not see the directory), saves a copy as ``OUT/tokenizer/`` and
records its kind and content hash in ``summary.json``, so the shards always travel with the tokenizer
their ids came from; the dataset stages read it from there.
"""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any

from pipeline.convert import ChunkStats, convert_items
from pipeline.io import expand_inputs
from pipeline.records import REJECT_SCHEMA, Reject, SourceBlock
from pipeline.redact import redact
from pipeline.shards import part_name, reset_dir, write_rows, write_table
from pipeline.sources import make_source, source_class
from pipeline.sources.base import reason_code

SUMMARY_FILE = "summary.json"
# Input files per read task. Small enough that a directory of a few hundred files still spreads over the
# converters (chunks, not groups, are the unit of parallel work), large enough that 200k PDB entries make
# ~800 Ray rows rather than 200k, and that their parts hold ``chunk_items`` entries rather than one each.
FILES_PER_READ = 256
TOKENIZER_DIR = "tokenizer"  # OUT/tokenizer: a copy of the tokenizer the ids came from


@dataclass
class IngestConfig:
    source: str
    inputs: list[str]
    out: str
    source_options: dict[str, Any] = field(default_factory=dict)
    workers: int | None = None  # converter actors; default: the CPUs Ray offers
    ray_address: str | None = None
    chunk_items: int | None = None  # items per output part; default: the source's own choice
    tokenizer_engine: str = "python"  # see grammar.tokenizer: identical ids, faster per core here
    storage_options: dict[str, Any] | None = None
    tokenizer: str | None = None  # a saved tokenizer directory (native or extended); None: the built-in one


@dataclass
class IngestSummary:
    config: dict[str, Any]
    files: int
    stats: ChunkStats
    elapsed_s: float
    tokenizer: dict[str, Any] = field(default_factory=dict)  # path (relative to OUT), kind, content_hash, ...

    def as_dict(self) -> dict[str, Any]:
        elapsed = round(self.elapsed_s, 3)
        # Source options may carry storage credentials: never written (pipeline.redact).
        return {"config": redact(self.config), "files": self.files, "tokenizer": self.tokenizer, **self.stats.as_dict(),
                "elapsed_s": elapsed}


def _chunk_row(group_index: int, chunk_index: int, uri: str, items: list) -> dict[str, list]:
    return {"group_index": [group_index], "chunk_index": [chunk_index], "uri": [uri], "items": [pickle.dumps(items)]}


def read_groups(files: list[str], files_per_read: int = FILES_PER_READ) -> list[dict[str, Any]]:
    """The read plan: consecutive files in groups, each group's URIs as one JSON list (one Ray row)."""
    return [{"group_index": g, "uris": json.dumps(files[start:start + files_per_read])}
            for g, start in enumerate(range(0, len(files), files_per_read))]


def read_file_chunks(batch: dict, source: str, options: dict, chunk_items: int) -> Iterator[dict[str, list]]:
    """Stream each group's files, in order, into chunks of at most ``chunk_items`` items (across files).

    A source with a batch path (``read_blocks``, see ``pipeline.sources.base``) is read in blocks of records;
    a block counts as its records, and a chunk that a block would overfill is closed first."""
    reader = make_source(source, options)
    blocks = hasattr(reader, "read_blocks") and hasattr(reader, "convert_block")
    for group_index, uris in zip(batch["group_index"], batch["uris"], strict=True):
        chunk: list = []
        chunk_index = size = 0
        for uri in json.loads(uris):
            read, broken = 0, False
            try:
                for item in reader.read_blocks(uri, chunk_items) if blocks else reader.read(uri):
                    records = len(item) if isinstance(item, SourceBlock) else 1
                    if chunk and size + records > chunk_items:
                        yield _chunk_row(group_index, chunk_index, uri, chunk)
                        chunk, chunk_index, size = [], chunk_index + 1, 0
                    chunk.append(item)
                    read, size = read + records, size + records
                    if size >= chunk_items:
                        yield _chunk_row(group_index, chunk_index, uri, chunk)
                        chunk, chunk_index, size = [], chunk_index + 1, 0
            except Exception as exc:  # the rest of this file is unreadable: one reject stands for it
                chunk.append(Reject(source, uri, f"after {read} items", "read", reason_code(exc), str(exc)))
                broken = True
            if read == 0 and not broken:
                chunk.append(Reject(source, uri, "file", "read", "empty_file", "no records found in the file"))
        if chunk:
            yield _chunk_row(group_index, chunk_index, uri, chunk)


class ChunkConverter:
    """Ray actor: converts, tokenizes and writes one chunk at a time; returns its accounting."""

    def __init__(self, source: str, options: dict, out: str, engine: str, storage_options: dict | None,
                 tokenizer: Any = None) -> None:
        self.source = make_source(source, options)
        self.tokenizer = tokenizer if tokenizer is not None else dataset_tokenizer(None)
        self.out, self.engine, self.storage_options = out.rstrip("/"), engine, storage_options

    def __call__(self, batch: dict) -> dict[str, list]:
        summaries = []
        for group_index, chunk_index, payload in zip(batch["group_index"], batch["chunk_index"], batch["items"],
                                                     strict=True):
            stats = convert_chunk(self.source, self.tokenizer, pickle.loads(payload), self.engine, self.out,
                                  part_name(group_index, chunk_index), self.storage_options)
            summaries.append(json.dumps(stats.as_dict()))
        return {"stats": summaries}


def convert_chunk(source: Any, tokenizer: Any, items: list, engine: str, out: str, name: str,
                  storage_options: dict | None = None) -> ChunkStats:
    """Convert one chunk and write its records part and rejects part (``OUT/records/NAME``, ``OUT/rejects/NAME``):
    the converter actors' work, also run in one process by ``benchmarks/bench_ingest.py``."""
    result = convert_items(source, tokenizer, items, engine)
    table = result.records_table()
    if table is not None:
        write_table(table, f"{out}/records/{name}", storage_options)
    if result.rejects:
        write_rows(result.rejects, REJECT_SCHEMA, f"{out}/rejects/{name}", storage_options)
    return result.stats


@contextmanager
def one_block_per_chunk() -> Iterator[None]:
    """Ray Data packs a task's small outputs into one block up to a target size, so all chunks of a
    file would reach a single converter; a one-byte target keeps each chunk its own block (a unit of
    parallel work). Measured on 200k SMILES, 2 cores: 2 vs 1 converters went from 0.99x to 1.72x
    (benchmarks/bench_ingest.py)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    previous = context.target_max_block_size
    context.target_max_block_size = 1
    try:
        yield
    finally:
        context.target_max_block_size = previous


def dataset_tokenizer(directory: str | None):
    """The tokenizer saved in ``directory`` (either kind), or the built-in native one."""
    from grammar.tokenizer import default_tokenizer, load_tokenizer

    return load_tokenizer(directory) if directory else default_tokenizer()


def save_tokenizer(tokenizer, out: str, storage_options: dict | None) -> dict[str, Any]:
    """Save ``tokenizer`` as ``OUT/tokenizer`` (through fsspec for remote outputs); its summary entry."""
    import tempfile

    from fsspec.core import url_to_fs

    fs, path = url_to_fs(f"{out}/{TOKENIZER_DIR}", **(storage_options or {}))
    with tempfile.TemporaryDirectory() as local:
        tokenizer.save(local)
        fs.makedirs(path, exist_ok=True)
        for file in sorted(Path(local).iterdir()):
            fs.put_file(str(file), f"{path}/{file.name}")
    return {"path": TOKENIZER_DIR, "kind": tokenizer.kind, "content_hash": tokenizer.content_hash,
            "vocab_size": tokenizer.vocab_size}


def run_ingest(config: IngestConfig) -> IngestSummary:
    import ray.data
    from ray.data import ActorPoolStrategy

    from pipeline.ray_runtime import ray_session

    started = time.perf_counter()
    cls = source_class(config.source)
    files = expand_inputs(config.inputs, getattr(cls, "suffixes", ()), config.storage_options)
    chunk_items = config.chunk_items or getattr(cls, "chunk_items", 1024)
    out = config.out.rstrip("/")
    tokenizer = dataset_tokenizer(config.tokenizer)
    for sub in ("records", "rejects", TOKENIZER_DIR):
        reset_dir(f"{out}/{sub}", config.storage_options)
    tokenizer_entry = save_tokenizer(tokenizer, out, config.storage_options)
    with ray_session(config.ray_address, config.workers), one_block_per_chunk():
        workers = config.workers or max(1, int(ray.available_resources().get("CPU", 1)))
        groups = read_groups(files)
        plan = ray.data.from_items(groups, override_num_blocks=max(1, len(groups)))
        chunks = plan.map_batches(
            read_file_chunks, batch_size=1, num_cpus=0.25,
            fn_kwargs={"source": config.source, "options": config.source_options, "chunk_items": chunk_items},
        )
        # Fractional CPUs per actor leave room for the read tasks (a full-CPU pool can starve them and hang).
        stats_rows = chunks.map_batches(
            ChunkConverter, batch_size=1, compute=ActorPoolStrategy(size=workers), num_cpus=0.75,
            fn_constructor_args=(config.source, config.source_options, out, config.tokenizer_engine,
                                 config.storage_options, tokenizer if config.tokenizer else None),
        ).take_all()
    stats = reduce(ChunkStats.__add__, (ChunkStats.from_dict(json.loads(r["stats"])) for r in stats_rows), ChunkStats())
    if stats.items_read != stats.items_written + stats.items_rejected:
        raise AssertionError(f"accounting broken: {stats.as_dict()['items']}")
    summary = IngestSummary(asdict(config), len(files), stats, time.perf_counter() - started, tokenizer_entry)
    write_summary(summary, out, config.storage_options)
    return summary


def write_summary(summary: IngestSummary, out: str, storage_options: dict | None) -> None:
    import fsspec

    with fsspec.open(f"{out}/{SUMMARY_FILE}", "w", **(storage_options or {})) as handle:
        json.dump(summary.as_dict(), handle, indent=1)
