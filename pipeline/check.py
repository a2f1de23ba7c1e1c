"""``logos check roundtrip``: parse -> serialize -> decode -> validate, counted per domain.

Per domain, ``read`` (records attempted) = ``valid`` + all ``rejected``; ``round_trip_ok`` counts valid
records whose decoded object equals the source object (``Format.same``; crystals by
``grammar.material.crystals_match``, a StructureMatcher that also tries supercells) and whose text
re-serializes identically. Items a source rejects before any record exists are counted under the
source's primary domain.

A *failure* is a record the source did write whose round trip broke: its text does not survive the
tokenizer, does not parse, decodes to a different object, or re-serializes differently. Each failure
is a ``RoundTripFailure`` (file, locator, id, reason code, detail); ``logos check roundtrip --failures
FILE`` writes them as JSON Lines. Input the source rejects (e.g. a disordered crystal) is not a round
trip failure: it is counted under ``rejected`` and ``logos ingest`` writes it as a reject row.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
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


@dataclass(frozen=True, slots=True)
class RoundTripFailure:
    """One record whose round trip broke: where it came from and why (one JSON Lines row)."""

    file: str
    locator: str
    id: str
    task: str
    reason: str  # a reason code: tokenizer_not_lossless, a grammar error code, decoded_object_differs, ...
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def sample_failure(sample: Sample) -> tuple[str, str, bool] | None:
    """None when the record round-trips, else (reason code, detail, whether it counts as rejected).

    Text the tokenizer or parser cannot take back is *rejected* (not valid); a valid text whose decoded
    object differs from the source object, or that re-serializes differently, is valid but not ok.
    """
    fmt = FORMATS[sample.task]
    tokenizer = default_tokenizer()
    try:
        decoded_text = tokenizer.decode(tokenizer.encode(sample.text))
        if decoded_text != sample.text:
            return "tokenizer_not_lossless", "decode(encode(text)) differs from the text", True
        parsed = fmt.parse(decoded_text)
    except GrammarError as exc:
        return exc.reason_code, str(exc), True
    if sample.obj is not None and not fmt.same(fmt.view(sample.obj), parsed):
        return "decoded_object_differs", f"the decoded {sample.task} is not the source object ({fmt.task} same)", False
    if fmt.write(parsed) != sample.text:
        return "text_not_idempotent", "write(parse(text)) differs from the text", False
    return None


def check_sample(sample: Sample) -> tuple[bool, str | None]:
    """(round trip ok, reject reason or None) for one record."""
    failure = sample_failure(sample)
    if failure is None:
        return True, None
    reason, _, rejected = failure
    return False, reason if rejected else None


def check_roundtrip(
    source_name: str, inputs: list[str], options: dict[str, Any] | None = None,
    failures: list[RoundTripFailure] | None = None,
) -> dict[str, Any]:
    """Counts per domain (see the module docstring); every round trip failure is appended to ``failures``."""
    source = make_source(source_name, options)
    files = expand_inputs(inputs, getattr(source_class(source_name), "suffixes", ()))
    domains: dict[str, _DomainCounts] = defaultdict(_DomainCounts)
    primary = domains[PRIMARY_DOMAIN[source_name]]
    found: list[RoundTripFailure] = [] if failures is None else failures

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
                    failure = sample_failure(sample)
                    if failure is None:
                        counts.read += 1
                        counts.valid += 1
                        counts.round_trip_ok += 1
                        continue
                    reason, detail, is_reject = failure
                    found.append(RoundTripFailure(uri, item.locator, sample.source_id, sample.task, reason, detail))
                    if is_reject:
                        rejected(counts, reason)
                    else:
                        counts.read += 1
                        counts.valid += 1
        except Exception as exc:  # a file that breaks mid-stream
            rejected(primary, reason_code(exc))
    return {"source": source_name, "files": len(files), "failures": len(found),
            "domains": {name: counts.as_dict() for name, counts in sorted(domains.items())}}
