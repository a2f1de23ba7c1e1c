"""Megatron export: one ``.bin/.idx`` pair per (split, domain), plus the blend file training reads.

Each record is one document: ``prefix_ids + input_ids + [eod_id]`` of the dataset's tokenizer (native:
``<bos> … <eos>``; extended Llama-3: ``<|begin_of_text|> … <|end_of_text|>``; Qwen: ``… <|endoftext|>``),
so a training document starts exactly as an inference prompt does (``tokenizer(prompt)`` in
transformers adds the same prefix and nothing after). The dtype is megatron's own rule
(``DType.optimal_dtype``): uint16 when the vocabulary has fewer than 65,500 ids, else int32 (an extended
Llama-3 or Qwen tokenizer has 128k-152k).

Partition-parallel, streaming: one pass over a partition (``partition_documents``) builds, from the Arrow
buffers of its ``input_ids`` (no Python list per record), the token bytes and document lengths of each (split,
domain) it holds; the driver appends the partitions' bytes to each prefix's ``.bin`` in partition order and
streams their lengths to a side file, so it holds a few partitions' tokens at a time and never a record; the
``.idx`` is written from that file at the end. Two entry points run the same partition function:
``export_files`` (a split dataset in the store: each partition is a row range of the records table's files
with the assignments file the split stage wrote for exactly those rows, ``pipeline.partitions``; the task
reads both itself, ``export_partition``, so the driver ships file names and row numbers) and
``export_megatron`` (records given as a DataFrame or LazyFrame: the driver reads consecutive row ranges of
``docs_per_shard`` rows, streamed once, and hands them to the tasks). Partitions run in this process
(``workers=None``) or as plain Ray tasks (``workers=N``, results taken in order); the partition size changes no
byte of the output. Why plain tasks rather than Ray Data: the unit of work is a row range whose output must be
merged in order into a few files; Ray Data would add a shuffle-free but order-preserving execution plan and
block re-slicing for nothing, while a task per row range is the whole need (the result is the same either way;
Daft was not tried). The tests check the files against megatron-core's own ``IndexedDatasetBuilder`` writing
the records one document at a time.

The ``.idx`` layout is megatron-core's (``_IndexWriter``: its header, then the counts, the int32
sequence lengths, the int64 byte pointers and the int64 document indices): the header comes from
``_IndexWriter`` itself; the arrays are written here in chunks because ``_IndexWriter.write`` takes
whole Python lists and computes the pointers in a Python loop (memory and time per document).
``verify`` reads each prefix back with megatron's ``IndexedDataset`` and checks its document count,
lengths, pointers and document indices against what was written, and the ``.bin`` bytes piece by piece against
the sha256 each piece's builder took (in its task: the driver hashes only what it reads back).

The blend (``logos-megatron-blend/1``, read by ``training.blend``) lists per split the prefixes,
their mixture weights (only domains with a positive weight) and domains, with paths relative to the
blend file; the tokenizer is saved next to it and its kind, hash, size and special ids (eod, pad, bos,
prefix) are recorded from the tokenizer itself, never hard-coded.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from grammar.tokenizer import LogosTokenizer
from pipeline.partitions import Partition, Storage, read_partition

BLEND_FORMAT = "logos-megatron-blend/1"
BLEND_FILE = "blend.json"
TOKENIZER_DIR = "tokenizer"
UINT16_LIMIT = 65_500
CHUNK = 1 << 20  # lengths handled at a time when the index is written and verified


class ExportError(RuntimeError):
    """The written files do not read back as the records that were exported."""


@dataclass(frozen=True)
class ExportConfig:
    docs_per_shard: int = 250_000  # records per partition (one task; its bytes are held once, by the driver)
    batch_rows: int = 65_536  # unused: partitions are read whole (docs_per_shard); kept so old configs load
    verify: bool = True
    # Ray tasks building the partitions' documents (None: in this process). The driver writes the files; the
    # tasks read the store (a split dataset's partitions), so on several machines the store is on object
    # storage or a filesystem they share. The same bytes either way: not part of the version.
    workers: int | None = None


@dataclass
class ExportResult:
    blend_path: Path
    documents: dict[str, dict[str, int]]  # split -> domain -> documents written
    tokens: dict[str, dict[str, int]]  # split -> domain -> tokens written (EOD included)


@dataclass
class PartitionPiece:
    """One (split, domain) of one partition: its documents' token bytes and lengths."""

    split: str
    domain: str
    tokens: np.ndarray  # the documents, concatenated, in the export dtype
    lengths: np.ndarray  # int32, one per document
    digest: bytes  # sha256 of the tokens' bytes, taken where the piece is built (a task, not the driver)


def megatron_dtype(vocab_size: int) -> type[np.number]:
    return np.uint16 if vocab_size < UINT16_LIMIT else np.int32


def document_tokens(input_ids: pa.ChunkedArray | pa.Array, start: np.ndarray, eod: int,
                    dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """``start + ids + [eod]`` of every record, concatenated, and each document's length: from the list
    array's offsets and values, without a Python object per record."""
    ids = input_ids.combine_chunks() if isinstance(input_ids, pa.ChunkedArray) else input_ids
    if ids.null_count:
        raise ExportError(f"{ids.null_count} records without input_ids")
    offsets = ids.offsets.to_numpy().astype(np.int64)
    offsets -= offsets[0]
    values = pc.list_flatten(ids).to_numpy(zero_copy_only=False)
    n, extra = len(ids), len(start) + 1
    counts = np.diff(offsets)
    lengths = counts + extra
    doc_start = offsets[:-1] + np.arange(n, dtype=np.int64) * extra  # where each document begins
    out = np.empty(int(offsets[-1]) + n * extra, dtype=dtype)
    for j, token in enumerate(start):
        out[doc_start + j] = token
    out[np.arange(len(values), dtype=np.int64) + np.repeat(doc_start + len(start) - offsets[:-1], counts)] = values
    out[doc_start + lengths - 1] = eod
    if np.any(lengths > np.iinfo(np.int32).max):
        raise ExportError("a document longer than 2^31 tokens")
    return out, lengths.astype(np.int32)


def partition_documents(part: pl.DataFrame | pl.LazyFrame, start: list[int], eod: int,
                        dtype: type) -> list[PartitionPiece]:
    """The pieces of one partition, by (split, domain) in sorted order, records in partition order."""
    frame = part.lazy().select("split", "domain", "input_ids").collect()
    pieces = []
    for (split, domain), rows in sorted(frame.partition_by("split", "domain", as_dict=True,
                                                           maintain_order=True).items()):
        tokens, lengths = document_tokens(rows["input_ids"].to_arrow(), np.asarray(start, np.int64), eod, dtype)
        pieces.append(PartitionPiece(split, domain, tokens, lengths, hashlib.sha256(tokens).digest()))
    return pieces


def partitions(records: pl.LazyFrame | pl.DataFrame, size: int) -> Iterator[pl.DataFrame]:
    """Consecutive row ranges of ``records``, in order: a DataFrame's slices (no copy), or a LazyFrame
    streamed once (``collect_batches``: a join in the plan, such as a split dataset's records and
    assignments, is computed once, not once per partition)."""
    if isinstance(records, pl.DataFrame):
        yield from records.iter_slices(size)
        return
    for batch in records.collect_batches(chunk_size=size):
        if batch.height:
            yield batch


class PrefixWriter:
    """One ``.bin/.idx`` pair written a partition at a time: bytes appended, lengths to a side file."""

    def __init__(self, prefix: Path, dtype: type) -> None:
        self.prefix, self.dtype = prefix, dtype
        prefix.parent.mkdir(parents=True, exist_ok=True)
        self.bin = open(f"{prefix}.bin", "wb")  # noqa: SIM115 - closed in finish
        self.lengths_path = Path(f"{prefix}.lengths")
        self.lengths = open(self.lengths_path, "wb")  # noqa: SIM115 - closed in finish
        self.pieces: list[tuple[int, bytes]] = []  # (bytes, sha256) of each piece, in file order
        self.documents = self.tokens = 0

    def append(self, piece: PartitionPiece) -> None:
        """The piece's bytes at the end of the ``.bin`` (no copy), its digest kept for ``verify``."""
        self.bin.write(memoryview(piece.tokens).cast("B"))
        self.pieces.append((piece.tokens.nbytes, piece.digest))
        self.lengths.write(piece.lengths.tobytes())
        self.documents += len(piece.lengths)
        self.tokens += len(piece.tokens)

    def finish(self, verify: bool) -> None:
        from megatron.core.datasets.indexed_dataset import DType, _IndexWriter

        self.bin.close()
        self.lengths.close()
        itemsize = DType.size(self.dtype)
        lengths = np.memmap(self.lengths_path, dtype=np.int32, mode="r") if self.documents else np.zeros(0, np.int32)
        with _IndexWriter(f"{self.prefix}.idx", self.dtype) as writer:  # header, version, dtype code
            out = writer.idx_writer
            out.write(struct.pack("<Q", self.documents))  # sequences: one per document
            out.write(struct.pack("<Q", self.documents + 1))  # document indices: 0, 1, ..., n
            for i in range(0, self.documents, CHUNK):
                out.write(np.ascontiguousarray(lengths[i : i + CHUNK]).tobytes())
            pointer = 0
            for i in range(0, self.documents, CHUNK):
                sizes = lengths[i : i + CHUNK].astype(np.int64) * itemsize
                out.write((pointer + np.cumsum(sizes) - sizes).tobytes())
                pointer += int(sizes.sum())
            for i in range(0, self.documents + 1, CHUNK):
                out.write(np.arange(i, min(i + CHUNK, self.documents + 1), dtype=np.int64).tobytes())
        if verify:
            self.verify(lengths, itemsize)
        del lengths
        self.lengths_path.unlink()

    def verify(self, lengths: np.ndarray, itemsize: int) -> None:
        from megatron.core.datasets.indexed_dataset import IndexedDataset

        dataset = IndexedDataset(str(self.prefix))
        index = dataset.index
        if len(dataset) != self.documents or index.dtype != self.dtype:
            raise ExportError(f"{self.prefix}: {len(dataset)} {index.dtype} sequences read back, "
                              f"{self.documents} {np.dtype(self.dtype).name} written")
        pointer = 0
        for i in range(0, self.documents, CHUNK):
            sizes = lengths[i : i + CHUNK].astype(np.int64) * itemsize
            if not (np.array_equal(index.sequence_lengths[i : i + CHUNK], lengths[i : i + CHUNK])
                    and np.array_equal(index.sequence_pointers[i : i + CHUNK], pointer + np.cumsum(sizes) - sizes)):
                raise ExportError(f"{self.prefix}: the index reads back different lengths or pointers near {i}")
            pointer += int(sizes.sum())
        if not np.array_equal(index.document_indices, np.arange(self.documents + 1)):
            raise ExportError(f"{self.prefix}: the index reads back different document indices")
        if pointer != Path(f"{self.prefix}.bin").stat().st_size:
            raise ExportError(f"{self.prefix}: the .bin holds other than the documents' {pointer:,} bytes")
        with open(f"{self.prefix}.bin", "rb") as handle:  # each piece's bytes against its builder's digest
            for n, (size, expected) in enumerate(self.pieces):
                digest, left = hashlib.sha256(), size
                while left and (block := handle.read(min(left, CHUNK * 16))):
                    digest.update(block)
                    left -= len(block)
                if left or digest.digest() != expected:
                    raise ExportError(f"{self.prefix}: the .bin reads back different from the documents written "
                                      f"(piece {n} of {len(self.pieces)})")


def computed_pieces(records: pl.LazyFrame | pl.DataFrame, size: int, start: list[int], eod: int, dtype: type,
                    workers: int | None) -> Iterator[list[PartitionPiece]]:
    """Each partition's pieces, in partition order: in this process, or on Ray with ``workers`` in flight."""
    parts = partitions(records.select("split", "domain", "input_ids"), size)  # only these are read and shipped
    if workers is None:
        for part in parts:
            yield partition_documents(part, start, eod, dtype)
        return
    from pipeline.partition_tasks import ordered_results
    from pipeline.ray_runtime import ray_session

    with ray_session(num_cpus=workers):
        calls = ((part, start, eod, dtype) for part in parts)
        yield from ordered_results("export", partition_documents, calls, in_flight=workers)


def export_megatron(
    config: ExportConfig,
    records: pl.LazyFrame | pl.DataFrame,
    weights: dict[str, dict[str, float]],
    out_dir: str | Path,
    tokenizer: LogosTokenizer,
    dataset: dict[str, str],
    workers: int | None = None,
) -> ExportResult:
    """Write every (split, domain) in ``records`` and a blend with ``weights`` (split -> domain -> weight).
    ``workers``: None runs the partitions in this process; N runs them as Ray tasks, N at a time. The records
    pass through this process (``export_files`` is the same with each task reading its own partition)."""
    dtype = megatron_dtype(tokenizer.vocab_size)
    start, eod = [int(i) for i in tokenizer.prefix_ids], int(tokenizer.eod_id)
    pieces = computed_pieces(records, config.docs_per_shard, start, eod, dtype, workers=workers)
    return write_export(config, pieces, weights, Path(out_dir), tokenizer, dataset)


def export_partition(partition: Partition, assignments: str, storage: Storage, start: list[int], eod: int,
                     dtype: type) -> list[PartitionPiece]:
    """One partition's pieces, read by the task itself: its records rows (``domain, input_ids``) joined with its
    assignments file (``content_id, split``; the split stage wrote it for exactly these rows)."""
    rows = read_partition(partition, ("content_id", "domain", "input_ids"), storage)
    split = pl.read_parquet(assignments, columns=["content_id", "split"], storage_options=storage)
    joined = rows.join(split, on="content_id", how="inner", maintain_order="left")
    return partition_documents(joined, start, eod, dtype)


def export_files(
    config: ExportConfig,
    partitions: Sequence[tuple[Partition, str]],
    weights: dict[str, dict[str, float]],
    out_dir: str | Path,
    tokenizer: LogosTokenizer,
    dataset: dict[str, str],
    workers: int | None = None,
    storage: Storage = None,
) -> ExportResult:
    """``export_megatron`` over record files: each partition (records rows, its assignments file) is read and
    turned into documents by its own task (``export_partition``); this process appends the tasks' bytes in
    partition order and writes the ``.idx``, holding at most ``2 x workers`` partitions' tokens, never a record.
    The same bytes as ``export_megatron`` over the same records joined with their assignments."""
    dtype = megatron_dtype(tokenizer.vocab_size)
    start, eod = [int(i) for i in tokenizer.prefix_ids], int(tokenizer.eod_id)

    def pieces() -> Iterator[list[PartitionPiece]]:
        if workers is None:
            for partition, assignments in partitions:
                yield export_partition(partition, assignments, storage, start, eod, dtype)
            return
        from pipeline.partition_tasks import ordered_results, segments_label
        from pipeline.ray_runtime import ray_session

        with ray_session(num_cpus=workers):
            calls = ((partition, assignments, storage, start, eod, dtype) for partition, assignments in partitions)
            # 2 x workers in flight: the next ones run while the driver writes
            yield from ordered_results("export", export_partition, calls, in_flight=2 * workers,
                                       describe=lambda index: segments_label(partitions[index][0]))

    return write_export(config, pieces(), weights, Path(out_dir), tokenizer, dataset)


def write_export(config: ExportConfig, parts: Iterable[list[PartitionPiece]], weights: dict[str, dict[str, float]],
                 out: Path, tokenizer: LogosTokenizer, dataset: dict[str, str]) -> ExportResult:
    """Append each partition's pieces (in partition order) to its prefix's files; then the indexes, the
    tokenizer and the blend."""
    dtype = megatron_dtype(tokenizer.vocab_size)
    writers: dict[tuple[str, str], PrefixWriter] = {}
    for pieces in parts:
        for piece in pieces:
            key = (piece.split, piece.domain)
            if key not in writers:
                writers[key] = PrefixWriter(out / "megatron" / piece.split / piece.domain, dtype)
            writers[key].append(piece)
    documents_written: dict[str, dict[str, int]] = {}
    tokens_written: dict[str, dict[str, int]] = {}
    for (split, domain), writer in sorted(writers.items()):
        writer.finish(config.verify)
        documents_written.setdefault(split, {})[domain] = writer.documents
        tokens_written.setdefault(split, {})[domain] = writer.tokens
    tokenizer.save(out / TOKENIZER_DIR)
    blend = blend_document(weights, documents_written, tokenizer, np.dtype(dtype).name, dataset)
    blend_path = out / BLEND_FILE
    blend_path.write_text(json.dumps(blend, indent=1))
    return ExportResult(blend_path, documents_written, tokens_written)


def blend_document(
    weights: dict[str, dict[str, float]], written: dict[str, dict[str, int]], tokenizer: LogosTokenizer,
    dtype: str, dataset: dict[str, str],
) -> dict:
    splits = {}
    for split, domains in written.items():
        chosen = [d for d in sorted(domains) if weights.get(split, {}).get(d, 0.0) > 0 and domains[d] > 0]
        if chosen:
            splits[split] = {
                "prefixes": [f"megatron/{split}/{d}" for d in chosen],
                "weights": [weights[split][d] for d in chosen],
                "domains": chosen,
            }
    if "train" not in splits:
        raise ExportError(f"no train documents with a positive weight (weights {weights}, written {written})")
    return {
        "format": BLEND_FORMAT,
        "tokenizer": blend_tokenizer(tokenizer),
        "dtype": dtype,
        "splits": splits,
        "dataset": dataset,
    }


def blend_tokenizer(tokenizer: LogosTokenizer) -> dict:
    """The blend's ``tokenizer`` entry: where it is saved and the ids training must agree with."""
    return {"path": TOKENIZER_DIR, "kind": tokenizer.kind, "content_hash": tokenizer.content_hash,
            "vocab_size": tokenizer.vocab_size, "eod_id": tokenizer.eod_id, "pad_id": tokenizer.pad_id,
            "bos_id": tokenizer.bos_id, "prefix_ids": list(tokenizer.prefix_ids)}
