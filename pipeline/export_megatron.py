"""Megatron export: one ``.bin/.idx`` pair per (split, domain), plus the blend file training reads.

Each record is one document: ``prefix_ids + input_ids + [eod_id]`` of the dataset's tokenizer (native:
``<bos> … <eos>``; extended Llama-3: ``<|begin_of_text|> … <|end_of_text|>``; Qwen: ``… <|endoftext|>``),
so a training document starts exactly as an inference prompt does (``tokenizer(prompt)`` in
transformers adds the same prefix and nothing after). Files are written with megatron-core's
``IndexedDatasetBuilder`` in shards of ``docs_per_shard`` documents, then merged with the builder's
``add_index`` (one pass over the shard bytes), and read back with megatron's ``IndexedDataset`` and
compared token for token with the records when ``verify`` is on. The dtype is megatron's own rule
(``DType.optimal_dtype``): uint16 when the vocabulary has fewer than 65,500 ids, else int32 (an extended
Llama-3 or Qwen tokenizer has 128k-152k).

The blend (``logos-megatron-blend/1``, read by ``training.blend``) lists per split the prefixes,
their mixture weights (only domains with a positive weight) and domains, with paths relative to the
blend file; the tokenizer is saved next to it and its kind, hash, size and special ids (eod, pad, bos,
prefix) are recorded from the tokenizer itself, never hard-coded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from grammar.tokenizer import LogosTokenizer

BLEND_FORMAT = "logos-megatron-blend/1"
BLEND_FILE = "blend.json"
TOKENIZER_DIR = "tokenizer"
UINT16_LIMIT = 65_500


class ExportError(RuntimeError):
    """The written files do not read back as the records that were exported."""


@dataclass(frozen=True)
class ExportConfig:
    docs_per_shard: int = 1_000_000
    batch_rows: int = 65_536  # records read at a time
    verify: bool = True


@dataclass
class ExportResult:
    blend_path: Path
    documents: dict[str, dict[str, int]]  # split -> domain -> documents written
    tokens: dict[str, dict[str, int]]  # split -> domain -> tokens written (EOD included)


def megatron_dtype(vocab_size: int) -> type[np.number]:
    return np.uint16 if vocab_size < UINT16_LIMIT else np.int32


def documents(records: pl.LazyFrame, split: str, domain: str, batch_rows: int) -> Iterator[pl.Series]:
    """The ``input_ids`` of one (split, domain), in record order, a batch at a time."""
    selected = records.filter((pl.col("split") == split) & (pl.col("domain") == domain)).select("input_ids")
    for batch in selected.collect_batches(chunk_size=batch_rows):
        yield batch["input_ids"]


def document_of(ids: list[int], start: list[int], eod: int) -> np.ndarray:
    """One Megatron document: the tokenizer's prefix (``start``), the record's ids, the EOD."""
    return np.asarray([*start, *ids, eod], dtype=np.int64)


def write_prefix(
    batches: Iterator[pl.Series], prefix: Path, dtype: type, start: list[int], eod: int, docs_per_shard: int
) -> tuple[int, int]:
    """Write documents in shards, merge them into ``prefix``; returns (documents, tokens)."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    shards: list[Path] = []
    builder, in_shard, n_docs, n_tokens = None, 0, 0, 0
    for batch in batches:
        for ids in batch.to_list():
            if builder is None:
                shards.append(prefix.with_name(f"{prefix.name}.shard{len(shards):05d}"))
                builder = IndexedDatasetBuilder(f"{shards[-1]}.bin", dtype=dtype)
            document = document_of(ids, start, eod)
            builder.add_document(document, [len(document)])
            in_shard, n_docs, n_tokens = in_shard + 1, n_docs + 1, n_tokens + len(document)
            if in_shard == docs_per_shard:
                builder.finalize(f"{shards[-1]}.idx")
                builder, in_shard = None, 0
    if builder is not None:
        builder.finalize(f"{shards[-1]}.idx")
    if len(shards) == 1:  # nothing to merge (add_index also runs a full gc.collect per shard)
        for suffix in (".bin", ".idx"):
            Path(f"{shards[0]}{suffix}").rename(f"{prefix}{suffix}")
        return n_docs, n_tokens
    merged = IndexedDatasetBuilder(f"{prefix}.bin", dtype=dtype)
    for shard in shards:
        merged.add_index(str(shard))
    merged.finalize(f"{prefix}.idx")
    for shard in shards:
        Path(f"{shard}.bin").unlink()
        Path(f"{shard}.idx").unlink()
    return n_docs, n_tokens


def verify_prefix(batches: Iterator[pl.Series], prefix: Path, start: list[int], eod: int, n_docs: int) -> None:
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    dataset = IndexedDataset(str(prefix))
    if len(dataset) != n_docs:
        raise ExportError(f"{prefix}: {len(dataset)} sequences read back, {n_docs} written")
    index = 0
    for batch in batches:
        for ids in batch.to_list():
            expected = document_of(ids, start, eod)
            if not np.array_equal(dataset[index].astype(np.int64), expected):
                raise ExportError(f"{prefix}: document {index} reads back different from the record")
            index += 1


def export_megatron(
    config: ExportConfig,
    records: pl.LazyFrame | pl.DataFrame,
    weights: dict[str, dict[str, float]],
    out_dir: str | Path,
    tokenizer: LogosTokenizer,
    dataset: dict[str, str],
) -> ExportResult:
    """Write every (split, domain) in ``records`` and a blend with ``weights`` (split -> domain -> weight)."""
    out = Path(out_dir)
    lazy = records.lazy()
    dtype = megatron_dtype(tokenizer.vocab_size)
    pairs = lazy.select("split", "domain").unique().sort("split", "domain").collect().iter_rows()
    documents_written: dict[str, dict[str, int]] = {}
    tokens_written: dict[str, dict[str, int]] = {}
    for split, domain in pairs:
        prefix = out / "megatron" / split / domain
        prefix.parent.mkdir(parents=True, exist_ok=True)
        batches = documents(lazy, split, domain, config.batch_rows)
        start, eod = list(tokenizer.prefix_ids), tokenizer.eod_id
        n_docs, n_tokens = write_prefix(batches, prefix, dtype, start, eod, config.docs_per_shard)
        if config.verify:
            verify_prefix(documents(lazy, split, domain, config.batch_rows), prefix, start, eod, n_docs)
        documents_written.setdefault(split, {})[domain] = n_docs
        tokens_written.setdefault(split, {})[domain] = n_tokens
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
