"""What the block-path tests of several sources share."""

from __future__ import annotations

import gzip
from pathlib import Path

from grammar.tokenizer import default_tokenizer
from pipeline.convert import ChunkResult, convert_items
from pipeline.records import SourceBlock


class OtherKindTokenizer:
    """The native tokenizer seen as another kind: the block path must then use the tokenizer's batch call."""

    kind = "other"

    def __init__(self) -> None:
        self.inner = default_tokenizer()

    def encode_batch_results(self, texts, *, engine="rust"):
        return self.inner.encode_batch_results(texts, engine=engine)


def per_record(source, path: Path, engine: str = "python") -> ChunkResult:
    """The file converted record by record (``read``): the reference the block path must equal."""
    return convert_items(source, default_tokenizer(), list(source.read(str(path))), engine)


def by_blocks(source, path: Path, max_records: int, tokenizer=None, engine: str = "python") -> ChunkResult:
    """The file converted in blocks of at most ``max_records`` (``read_blocks``)."""
    entries = list(source.read_blocks(str(path), max_records))
    assert all(len(e) <= max_records for e in entries if isinstance(e, SourceBlock))
    return convert_items(source, tokenizer or default_tokenizer(), entries, engine)


def assert_same(expected: ChunkResult, got: ChunkResult) -> None:
    """The same rows (column by column), rejects and accounting."""
    want, have = expected.records_table(), got.records_table()
    assert (want is None) == (have is None)
    if want is not None:
        assert have.schema.equals(want.schema) and have.num_rows == want.num_rows
        for name in want.column_names:
            assert have[name].equals(want[name]), name
    assert got.rejects == expected.rejects
    assert got.stats.as_dict() == expected.stats.as_dict()


def damaged(plain: bytes, damage: str) -> bytes:
    """``plain`` cut in the middle of its gzip stream (``corrupt_gzip``), or with a Latin-1 byte in the middle
    (``not_utf8``)."""
    if damage == "corrupt_gzip":
        compressed = gzip.compress(plain)
        return compressed[: len(compressed) // 2]
    return plain[: len(plain) // 2] + b"\xe9" + plain[len(plain) // 2:]
