"""``logos check roundtrip``: parse -> serialize -> decode -> validate, counted per domain.

Per domain, ``read`` (records attempted) = ``valid`` + all ``rejected``; ``round_trip_ok`` counts valid
records whose decoded object equals the source object (``Format.same``; crystals by StructureMatcher)
and whose text re-serializes identically. Items a source rejects before any record exists are counted
under the source's primary domain.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from grammar.errors import GrammarError
from grammar.formats import FORMATS
from grammar.tokenizer import default_tokenizer
from pipeline.io import expand_inputs
from pipeline.records import Reject, Sample
from pipeline.sources import PRIMARY_DOMAIN, make_source, source_class
from pipeline.sources.base import reason_code


class _DomainCounts:
    def __init__(self) -> None:
        self.read = self.valid = self.round_trip_ok = 0
        self.rejected: Counter[str] = Counter()

    def as_dict(self) -> dict[str, Any]:
        return {"read": self.read, "valid": self.valid, "round_trip_ok": self.round_trip_ok,
                "rejected": dict(sorted(self.rejected.items()))}


def check_sample(sample: Sample) -> tuple[bool, str | None]:
    """(round trip ok, reject reason or None) for one record."""
    fmt = FORMATS[sample.task]
    tokenizer = default_tokenizer()
    try:
        decoded_text = tokenizer.decode(tokenizer.encode(sample.text))
        if decoded_text != sample.text:
            return False, "tokenizer_not_lossless"
        parsed = fmt.parse(decoded_text)
    except GrammarError as exc:
        return False, exc.reason_code
    same_object = sample.obj is None or fmt.same(fmt.view(sample.obj), parsed)
    return same_object and fmt.write(parsed) == sample.text, None


def check_roundtrip(source_name: str, inputs: list[str], options: dict[str, Any] | None = None) -> dict[str, Any]:
    source = make_source(source_name, options)
    files = expand_inputs(inputs, getattr(source_class(source_name), "suffixes", ()))
    domains: dict[str, _DomainCounts] = defaultdict(_DomainCounts)
    primary = domains[PRIMARY_DOMAIN[source_name]]

    def rejected(counts: _DomainCounts, reason: str) -> None:
        counts.read += 1
        counts.rejected[reason] += 1

    for uri in files:
        try:
            for item in source.read(uri):
                if isinstance(item, Reject):
                    rejected(primary, item.reason_code)
                    continue
                try:
                    conversion = source.convert(item)
                except Exception as exc:  # counted, never fatal
                    rejected(primary, reason_code(exc))
                    continue
                for part in conversion.rejects:
                    rejected(primary, part.reason_code)
                for sample in conversion.samples:
                    counts = domains[sample.domain]
                    ok, reason = check_sample(sample)
                    if reason is not None:
                        rejected(counts, reason)
                        continue
                    counts.read += 1
                    counts.valid += 1
                    counts.round_trip_ok += ok
        except Exception as exc:  # a file that breaks mid-stream
            rejected(primary, reason_code(exc))
    return {"source": source_name, "files": len(files),
            "domains": {name: counts.as_dict() for name, counts in sorted(domains.items())}}
