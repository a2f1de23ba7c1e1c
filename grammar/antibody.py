"""Antibodies: ``<AntibodyS>`` heavy chain, light chain ``<AntibodyE>`` with CDRs marked; antibody–antigen pairs.

Task ``antibody``::

    <AntibodyS><ProteinS>EVQ…<CdrS>GYTFTDHY<CdrE>…<ProteinE><ProteinS>DIQ…<CdrS>QSVSSY<CdrE>…<ProteinE><AntibodyE>

- **Chains.** Each chain is a ``<ProteinS>…<ProteinE>`` block, as the chains of a multi-chain protein are: the
  block boundary ``<ProteinE><ProteinS>`` is the chain separator, so no separator token is needed. The order
  is fixed, heavy then light, so a block's place says its type. A nanobody (VHH) or any heavy chain without
  a partner is one block. A light chain without a heavy chain (OAS unpaired light-chain units, light-chain
  dimers) keeps the heavy slot as an empty block ``<ProteinS><ProteinE>``; an empty block is allowed
  nowhere else.
- **Sequences** are the variable domains as the numbering tool delimits them (OAS holds V domains only;
  structures are cut to the same span), one residue token each, the protein alphabet.
- **CDRs.** Each of a chain's three CDRs is wrapped whole in ``<CdrS>…<CdrE>``: a CDR is one contiguous
  region, so two tokens per CDR (six per chain) mark it, where per-residue marks in the pocket style would
  cost two per residue. Which CDR it is is its order in the chain (1, 2, 3); every chain has exactly three,
  none empty. Boundaries are the IMGT ones (CDR1 27–38, CDR2 56–65, CDR3 105–117) as the numbering tool
  assigns them (``pipeline.sources.antibody_numbering``). ``<CdrS>``/``<CdrE>`` are the only tokens this
  format adds; they close the grammar vocabulary, after every older token, so older ids are unchanged.
- **Paratope** (task ``antibody_antigen`` only): each antibody residue in contact with the antigen is wrapped
  ``<PocketS>X<PocketE>``, exactly as a pocket residue is, inside or outside a CDR.

Task ``antibody_antigen``: the paratope-marked antibody, then the antigen chains as a one-letter pocket
annotation (``grammar.pocket``) whose marked residues are the epitope::

    <AntibodyS>…<PocketS>Y<PocketE>…<AntibodyE><ProteinS>…<PocketS>K<PocketE>…<ProteinE>

The epitope is the antigen's binding site for the antibody, found by the same contact rule as a ligand
pocket (``grammar.pocket.DEFAULT_POCKET_CUTOFF``, heavy atom to heavy atom).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from grammar.errors import InvalidResidue, MalformedText
from grammar.lexer import TokenStream
from grammar.pocket import BindingSite, site_from_chains, write_pocket
from grammar.protein import RESIDUE_ALPHABET, Chain, read_chains
from grammar.tags import ANTIBODY_E, ANTIBODY_S, CDR_E, CDR_S, POCKET_E, POCKET_S, PROTEIN_E, PROTEIN_S

CDRS_PER_CHAIN = 3
_RESIDUES = frozenset(RESIDUE_ALPHABET)


@dataclass(frozen=True, slots=True)
class AntibodyChain:
    """One variable domain: its sequence, its three CDRs and (in an interaction) its paratope.

    ``cdrs`` are half-open ``(start, end)`` residue indices, in order; ``paratope`` sorted residue indices.
    ``chain_type`` (numbering's H, K or L) and ``chain_id`` are provenance, not grammar content.
    """

    sequence: str
    cdrs: tuple[tuple[int, int], ...]
    paratope: tuple[int, ...] = ()
    chain_type: str = field(default="", compare=False)
    chain_id: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        Chain(self.sequence, chain_id=self.chain_id)  # the protein alphabet and a non-empty sequence
        if len(self.cdrs) != CDRS_PER_CHAIN:
            raise InvalidResidue(f"antibody chain {self.chain_id!r}: {len(self.cdrs)} CDRs, need {CDRS_PER_CHAIN}")
        previous_end = 0
        for start, end in self.cdrs:
            if not previous_end <= start < end <= len(self.sequence):
                raise InvalidResidue(f"antibody chain {self.chain_id!r}: CDRs {self.cdrs} must be non-empty, in "
                                     f"order and within its {len(self.sequence)} residues")
            previous_end = end
        if list(self.paratope) != sorted(set(self.paratope)) or any(
            not 0 <= i < len(self.sequence) for i in self.paratope
        ):
            raise InvalidResidue(f"antibody chain {self.chain_id!r}: paratope must be unique, sorted, in the chain")

    def cdr_sequences(self) -> tuple[str, ...]:
        return tuple(self.sequence[start:end] for start, end in self.cdrs)


@dataclass(frozen=True, slots=True)
class Antibody:
    """Heavy and light variable domains; either may be missing, not both."""

    heavy: AntibodyChain | None
    light: AntibodyChain | None = None
    source_id: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.heavy is None and self.light is None:
            raise InvalidResidue("an antibody needs a heavy or a light chain")

    @property
    def chains(self) -> tuple[AntibodyChain, ...]:
        return tuple(chain for chain in (self.heavy, self.light) if chain is not None)

    @property
    def has_paratope(self) -> bool:
        return any(chain.paratope for chain in self.chains)

    def without_paratope(self) -> Antibody:
        def plain(chain: AntibodyChain | None) -> AntibodyChain | None:
            return replace(chain, paratope=()) if chain is not None else None

        return Antibody(plain(self.heavy), plain(self.light), self.source_id)


@dataclass(frozen=True, slots=True)
class AntibodyAntigen:
    """An antibody with its paratope marked and its antigen with the epitope as the pocket."""

    antibody: Antibody
    antigen: BindingSite

    def __post_init__(self) -> None:
        if not self.antibody.has_paratope:
            raise InvalidResidue("an antibody–antigen pair needs paratope residues")

    @property
    def chains(self) -> tuple[AntibodyChain | Chain, ...]:
        """Every chain, antibody then antigen: what the split stage clusters the pair by."""
        return self.antibody.chains + self.antigen.protein.chains


def _write_chain(chain: AntibodyChain | None) -> str:
    if chain is None:
        return PROTEIN_S + PROTEIN_E
    starts = {start for start, _ in chain.cdrs}
    ends = {end for _, end in chain.cdrs}
    paratope = frozenset(chain.paratope)
    parts = [PROTEIN_S]
    for i, residue in enumerate(chain.sequence):
        if i in ends:
            parts.append(CDR_E)
        if i in starts:
            parts.append(CDR_S)
        parts.append(f"{POCKET_S}{residue}{POCKET_E}" if i in paratope else residue)
    if len(chain.sequence) in ends:
        parts.append(CDR_E)
    parts.append(PROTEIN_E)
    return "".join(parts)


def write_antibody(antibody: Antibody) -> str:
    light = _write_chain(antibody.light) if antibody.light is not None else ""
    return f"{ANTIBODY_S}{_write_chain(antibody.heavy)}{light}{ANTIBODY_E}"


def write_antibody_antigen(pair: AntibodyAntigen) -> str:
    return write_antibody(pair.antibody) + write_pocket(pair.antigen)


def _read_chain(stream: TokenStream) -> AntibodyChain | None:
    """One ``<ProteinS>…<ProteinE>`` block of an antibody; ``None`` for the empty heavy slot."""
    at = stream.position
    stream.expect(PROTEIN_S)
    residues: list[str] = []
    cdrs: list[tuple[int, int]] = []
    paratope: list[int] = []
    cdr_start: int | None = None
    while (token := stream.peek()) != PROTEIN_E:
        if token is None:
            raise stream.error(f"unterminated antibody chain: expected {PROTEIN_E}")
        if token == CDR_S:
            if cdr_start is not None:
                raise stream.error(f"{CDR_S} inside a CDR")
            stream.next()
            cdr_start = len(residues)
        elif token == CDR_E:
            if cdr_start is None or cdr_start == len(residues):
                raise stream.error(f"{CDR_E} without an open, non-empty CDR")
            stream.next()
            cdrs.append((cdr_start, len(residues)))
            cdr_start = None
        elif token == POCKET_S:
            stream.next()
            residue = stream.next().text
            if residue not in _RESIDUES:
                raise stream.error(f"paratope mark holds {residue!r}, not one residue letter", InvalidResidue)
            stream.expect(POCKET_E)
            paratope.append(len(residues))
            residues.append(residue)
        elif token in _RESIDUES:
            residues.append(stream.next().text)
        else:
            raise stream.error(f"{token!r} is not a residue of the alphabet {RESIDUE_ALPHABET}", InvalidResidue)
    if cdr_start is not None:
        raise stream.error(f"unterminated CDR: expected {CDR_E} before {PROTEIN_E}")
    stream.expect(PROTEIN_E)
    if not residues:
        return None
    if len(cdrs) != CDRS_PER_CHAIN:
        raise MalformedText(f"antibody chain with {len(cdrs)} CDRs, need {CDRS_PER_CHAIN}", position=at,
                            text=stream.text)
    return AntibodyChain("".join(residues), tuple(cdrs), tuple(paratope))


def read_antibody(stream: TokenStream) -> Antibody:
    at = stream.position
    stream.expect(ANTIBODY_S)
    chains = []
    while stream.peek() == PROTEIN_S:
        chains.append(_read_chain(stream))
    stream.expect(ANTIBODY_E)
    if not 1 <= len(chains) <= 2:
        raise MalformedText(f"an antibody holds a heavy and a light chain, found {len(chains)} blocks", position=at,
                            text=stream.text)
    heavy, light = chains[0], chains[1] if len(chains) == 2 else None
    if light is None and len(chains) == 2:
        raise MalformedText("empty light chain block", position=at, text=stream.text)
    if heavy is None and light is None:
        raise MalformedText("an empty heavy block must be followed by a light chain", position=at, text=stream.text)
    return Antibody(heavy, light)


def parse_antibody(text: str) -> Antibody:
    stream = TokenStream(text)
    antibody = read_antibody(stream)
    stream.expect_end()
    if antibody.has_paratope:
        raise MalformedText("a plain antibody has no paratope marks", position=0, text=text)
    return antibody


def parse_antibody_antigen(text: str) -> AntibodyAntigen:
    stream = TokenStream(text)
    antibody = read_antibody(stream)
    if not antibody.has_paratope:
        raise MalformedText("the antibody of an antibody–antigen pair marks its paratope", position=0, text=text)
    antigen = read_chains(stream)
    stream.expect_end()
    return AntibodyAntigen(antibody, site_from_chains(antigen, stream, expanded=False))
