"""The contract every ingest source fulfils.

A source reads its files into ``SourceItem``s (streaming, one file at a time) and converts one item
into grammar ``Sample``s. Errors are data: a file that cannot be read becomes a ``Reject`` for that
file; an item that cannot be converted becomes a ``Reject`` for that item; an object inside an item
that cannot be converted (one ligand of an entry, say) becomes a ``Reject`` while its siblings go on.
The engine (``pipeline.ingest``) owns parallelism, tokenization, writing and accounting.

Batch conversion (optional, ``BlockSource``): a source whose records are small and many (FASTA sequences) may
also offer ``read_blocks`` and ``convert_block``. The engine then reads ``SourceBlock``s (many records of one file
as columns) and the source turns a whole block into shard rows in one call: an Arrow ``RecordBatch`` in
``SHARD_SCHEMA``, tokenized, with its rejects and its accounting, skipping the per-record ``SourceItem``,
``Sample`` and row-dict objects that cost more than such a record's conversion. ``read``/``convert`` stay the
reference (``logos check``, ``convert_file``, tests): a block's rows must equal, byte for byte, what the
per-record path makes of the same records, and records the block path does not handle itself (rejects,
unusual headers) it hands to the per-record path (``block_items``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pipeline.records import Reject, Sample, SourceBlock, SourceItem


@dataclass(slots=True)
class Conversion:
    """What converting one item gave: its samples, and rejects for the parts that failed."""

    samples: list[Sample] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


class Source(Protocol):
    name: ClassVar[str]

    def read(self, uri: str) -> Iterator[SourceItem | Reject]:
        """Stream the items of one file (fsspec URI). Yield a ``Reject`` for unreadable parts."""
        ...

    def convert(self, item: SourceItem) -> Conversion:
        """Turn one item into samples. May raise; the engine records the exception as a reject."""
        ...


class BlockSource(Source, Protocol):
    """A source that can also read and convert many records at once (module docstring)."""

    def read_blocks(self, uri: str, max_records: int) -> Iterator[SourceBlock | SourceItem | Reject]:
        """Like ``read``, in blocks of at most ``max_records`` records; may yield plain items (a file kind
        without a block path) and rejects."""
        ...

    def convert_block(self, block: SourceBlock, tokenizer: Any, engine: str) -> Any:
        """Shard rows (as ``pipeline.convert.ChunkResult``: a ``RecordBatch`` in ``batches``), rejects and
        accounting for every record of ``block``: read = written + rejected over its records."""
        ...

    def block_items(self, block: SourceBlock) -> list[SourceItem]:
        """The block's records as the items ``read`` would have yielded (for the per-record path)."""
        ...


def reason_code(exc: BaseException) -> str:
    """Groupable reason of an exception: grammar errors carry their own code."""
    return getattr(exc, "reason_code", None) or type(exc).__name__


def reject_from(item: SourceItem, stage: str, exc: BaseException, part: str | None = None) -> Reject:
    locator = f"{item.locator} {part}" if part else item.locator
    return Reject(item.source, item.uri, locator, stage, reason_code(exc), str(exc) or type(exc).__name__)


def metadata_without_nones(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@dataclass(slots=True)
class FileConversion:
    items: list[SourceItem] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


def convert_file(source: Source, uri: str) -> FileConversion:
    """Read one file and convert each item in this process, as the engine would (no tokenizing,
    no writing): for trying a source on a file, and for tests. Conversion exceptions propagate."""
    result = FileConversion()
    for entry in source.read(str(uri)):
        if isinstance(entry, Reject):
            result.rejects.append(entry)
            continue
        result.items.append(entry)
        conversion = source.convert(entry)
        result.samples += conversion.samples
        result.rejects += conversion.rejects
    return result
