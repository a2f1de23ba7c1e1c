"""The contract every ingest source fulfils.

A source reads its files into ``SourceItem``s (streaming, one file at a time) and converts one item
into grammar ``Sample``s. Errors are data: a file that cannot be read becomes a ``Reject`` for that
file; an item that cannot be converted becomes a ``Reject`` for that item; an object inside an item
that cannot be converted (one ligand of an entry, say) becomes a ``Reject`` while its siblings go on.
The engine (``pipeline.ingest``) owns parallelism, tokenization, writing and accounting.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pipeline.records import Reject, Sample, SourceItem


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
