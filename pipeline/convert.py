"""Turning a chunk of source items into shard rows and reject rows, with exact accounting.

Pure and Ray-free: the ingest engine runs it inside workers, `logos check` and the tests call it
directly. Every item ends up either *written* (>= 1 record) or *rejected* (>= 1 reject row saying why);
parts of a written item that failed (one ligand of an entry, a sample that did not tokenize) are
recorded as *part rejects*. So ``read == written + rejected`` always holds.

A ``SourceBlock`` in the chunk (many records of one file, from a source's ``read_blocks``) is converted by the
source's ``convert_block`` in one call; its rows arrive as an Arrow batch (``ChunkResult.batches``) and its
accounting counts its records, so the invariant holds per record either way (``pipeline.sources.base``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from grammar.tokenizer import LogosTokenizer
from pipeline.records import SHARD_SCHEMA, Reject, SourceBlock, SourceItem, reject_row, shard_row
from pipeline.sources.base import Source, reject_from


@dataclass
class ChunkStats:
    items_read: int = 0
    items_written: int = 0
    items_rejected: int = 0
    part_rejects: int = 0
    records: int = 0
    tokens: int = 0
    records_by_task: Counter = field(default_factory=Counter)
    records_by_domain: Counter = field(default_factory=Counter)
    rejects_by_reason: Counter = field(default_factory=Counter)

    def __add__(self, other: ChunkStats) -> ChunkStats:
        return ChunkStats(
            *(getattr(self, f) + getattr(other, f) for f in ("items_read", "items_written", "items_rejected",
                                                            "part_rejects", "records", "tokens")),
            self.records_by_task + other.records_by_task,
            self.records_by_domain + other.records_by_domain,
            self.rejects_by_reason + other.rejects_by_reason,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "items": {"read": self.items_read, "written": self.items_written, "rejected": self.items_rejected},
            "part_rejects": self.part_rejects,
            "records": self.records,
            "tokens": self.tokens,
            "records_by_task": dict(sorted(self.records_by_task.items())),
            "records_by_domain": dict(sorted(self.records_by_domain.items())),
            "rejects_by_reason": dict(sorted(self.rejects_by_reason.items())),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChunkStats:
        items = data["items"]
        return cls(
            items["read"], items["written"], items["rejected"], data["part_rejects"], data["records"], data["tokens"],
            Counter(data["records_by_task"]), Counter(data["records_by_domain"]), Counter(data["rejects_by_reason"]),
        )


@dataclass
class ChunkResult:
    records: list[dict[str, Any]]  # rows made per record, after every row of ``batches``
    rejects: list[dict[str, Any]]
    stats: ChunkStats
    batches: list[pa.RecordBatch] = field(default_factory=list)  # rows made per block (SHARD_SCHEMA), in order

    def records_table(self) -> pa.Table | None:
        """Every shard row of the chunk, in item order (None when there is none)."""
        if not self.batches:
            return pa.Table.from_pylist(self.records, schema=SHARD_SCHEMA) if self.records else None
        rows = [pa.RecordBatch.from_pylist(self.records, schema=SHARD_SCHEMA)] if self.records else []
        return pa.Table.from_batches([*self.batches, *rows], schema=SHARD_SCHEMA)


def block_result(source: Source, tokenizer: LogosTokenizer, engine: str, block: SourceBlock, batch: pa.RecordBatch,
                 stats: ChunkStats, converted: Sequence[int], rest: Sequence[int]) -> ChunkResult:
    """A block's result when ``batch`` holds the rows its source converted as a block (the block's records at
    ``converted``, with their ``stats``) and the records at ``rest`` failed somewhere on that path: those go
    through the per-record path one by one (which writes their rejects), and every row is put back in the
    block's record order."""
    if not len(rest):
        return ChunkResult([], [], stats, [batch])
    per_record: list[dict[str, Any]] = []
    order: list[int] = []
    rejects: list[dict[str, Any]] = []
    for index, item in zip(rest, source.block_items(block, rest), strict=True):  # type: ignore[attr-defined]
        result = convert_items(source, tokenizer, [item], engine)
        stats += result.stats
        rejects += result.rejects
        per_record += result.records
        order += [int(index)] * len(result.records)
    if per_record:
        merged = pa.Table.from_batches([batch, pa.RecordBatch.from_pylist(per_record, schema=SHARD_SCHEMA)])
        positions = np.concatenate([np.asarray(converted, np.int64), np.asarray(order, np.int64)])
        batch = merged.take(np.argsort(positions, kind="stable")).combine_chunks().to_batches()[0]
    return ChunkResult([], rejects, stats, [batch])


def convert_items(
    source: Source, tokenizer: LogosTokenizer, items: list[SourceItem | SourceBlock | Reject], engine: str = "python"
) -> ChunkResult:
    records: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    stats = ChunkStats()
    batches: list[pa.RecordBatch] = []

    def reject(r: Reject, *, whole_item: bool) -> None:
        rejects.append(reject_row(r))
        stats.rejects_by_reason[r.reason_code] += 1
        if not whole_item:
            stats.part_rejects += 1

    for item in items:
        if isinstance(item, SourceBlock):
            block = source.convert_block(item, tokenizer, engine)  # type: ignore[attr-defined]
            counted = block.stats.items_written + block.stats.items_rejected
            if block.stats.items_read != len(item) or counted != len(item):
                raise AssertionError(f"{item.uri} {item.locator}: block accounting broken: {block.stats.as_dict()}")
            if records:  # rows made per record so far go first: the part keeps the items' order
                batches.append(pa.RecordBatch.from_pylist(records, schema=SHARD_SCHEMA))
                records = []
            batches += [b for b in block.batches if b.num_rows]
            if block.records:
                batches.append(pa.RecordBatch.from_pylist(block.records, schema=SHARD_SCHEMA))
            rejects += block.rejects
            stats += block.stats
            continue
        stats.items_read += 1
        if isinstance(item, Reject):  # the reader could not produce this item at all
            stats.items_rejected += 1
            reject(item, whole_item=True)
            continue
        try:
            conversion = source.convert(item)
        except Exception as exc:  # one bad record never stops the job: it becomes a reject row
            stats.items_rejected += 1
            reject(reject_from(item, "convert", exc), whole_item=True)
            continue
        encoded = tokenizer.encode_batch_results([s.text for s in conversion.samples], engine=engine)
        item_rejects: list[Reject] = []
        written = 0
        for sample, ids in zip(conversion.samples, encoded, strict=True):
            if isinstance(ids, Exception):
                item_rejects.append(reject_from(item, "tokenize", ids, part=f"{sample.task} {sample.source_id}"))
                continue
            records.append(shard_row(sample, item, ids))
            stats.records += 1
            stats.tokens += len(ids)
            stats.records_by_task[sample.task] += 1
            stats.records_by_domain[sample.domain] += 1
            written += 1
        item_rejects += conversion.rejects
        if written:
            stats.items_written += 1
        else:
            stats.items_rejected += 1
            if not item_rejects:
                item_rejects.append(
                    Reject(item.source, item.uri, item.locator, "convert", "no_records", "the item produced no records")
                )
        for r in item_rejects:
            reject(r, whole_item=not written)
    return ChunkResult(records, rejects, stats, batches)
