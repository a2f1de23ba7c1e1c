"""Antibody variable domains found and numbered by ANARCI (IMGT scheme): chain type, span and CDRs.

Why ANARCI (``anarci`` on PyPI, which runs Debian's ``hmmscan``) and not AntPack, measured with
``benchmarks/bench_antibody_numbering.py`` on the 14 antibody chains of 8KDM, 4ZXB, 1KB5 and 1IGY:

- Both give the same IMGT CDRs: 42 of 42 CDRs identical (ANARCI positions 27–38, 56–65, 105–117 against
  AntPack ``assign_cdr_labels``).
- AntPack is about two orders of magnitude faster (117x in one run: 13 against 1,529 chains/s on a loaded
  2-core box), but its licence rules it out for this Apache-2.0 project: AntPack >= 0.3.9 is under an
  "Academic Software Licence" (non-commercial only) and numbers nothing without a registered licence key;
  0.3.8 and older are GPL-3. ANARCI is BSD-3-Clause.
- ANARCI tells T-cell receptor domains (types A, B, G, D) from antibody ones; AntPack, asked for H/K/L, numbers
  the TCR alpha chain of 1KB5 as a kappa chain (64% identity, no error), so a threshold of ours would decide.

Cost: ANARCI spends its time in ``hmmscan`` and in Biopython's parse of the hmmscan text (cProfile: about
40% and 55%); a call per chain adds the start of ``hmmscan`` each time, so the source numbers the OAS rows
of one engine chunk in one call (``antibody.NumberingBatch``). OAS data units already carry ANARCI's
numbering; at OAS scale, trusting it (not re-numbering) would be the way to stay cheap.

All species' HMMs are searched (``allowed_species=None``): camelid VHHs and rabbit, rat, pig or rhesus
antibodies are then numbered on their own species' models. IMGT CDRs, by IMGT position (Lefranc et al.
2003): CDR1 27–38, CDR2 56–65, CDR3 105–117, insertions included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from anarci import anarci

IMGT_CDRS: tuple[tuple[int, int], ...] = ((27, 38), (56, 65), (105, 117))
HEAVY, LIGHT_TYPES, TCR_TYPES = "H", frozenset("KL"), frozenset("ABGD")
_FOR_ANARCI = str.maketrans({"U": "X", "O": "X"})  # ANARCI's alphabet has X but not U/O


class NumberingError(ValueError):
    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code


@dataclass(frozen=True, slots=True)
class VDomain:
    """One numbered variable domain of a sequence.

    ``start``/``end``: half-open span in the sequence; ``cdrs``: half-open CDR spans *in the domain*
    (``sequence[start:end]``); ``positions``: IMGT position per domain residue ("27", "111A").
    """

    chain_type: str  # H, K, L (antibody) or A, B, G, D (T-cell receptor)
    species: str
    start: int
    end: int
    cdrs: tuple[tuple[int, int], ...]
    positions: tuple[str, ...]

    @property
    def is_heavy(self) -> bool:
        return self.chain_type == HEAVY

    @property
    def is_light(self) -> bool:
        return self.chain_type in LIGHT_TYPES


def number_sequences(sequences: Sequence[str]) -> list[list[VDomain]]:
    """The variable domains of each sequence (in sequence order; [] where there is none), one ANARCI run."""
    if not sequences:
        return []
    named = [(str(i), sequence.translate(_FOR_ANARCI)) for i, sequence in enumerate(sequences)]
    numbered, details, _ = anarci(named, scheme="imgt", allowed_species=None, assign_germline=False)
    return [
        [_domain(domain, detail) for domain, detail in zip(numbering or [], detail_list or [], strict=True)]
        for numbering, detail_list in zip(numbered, details, strict=True)
    ]


def _domain(domain: tuple, detail: dict) -> VDomain:
    residues, start, _ = domain
    positions: list[str] = []
    spans: list[list[int]] = [[] for _ in IMGT_CDRS]
    for (number, insertion), residue in residues:
        if residue == "-":
            continue
        for k, (low, high) in enumerate(IMGT_CDRS):
            if low <= number <= high:
                spans[k].append(len(positions))
        positions.append(f"{number}{insertion.strip()}")
    cdrs = tuple((span[0], span[-1] + 1) if span else (0, 0) for span in spans)
    return VDomain(detail["chain_type"], detail.get("species") or "", start, start + len(positions), cdrs,
                   tuple(positions))
