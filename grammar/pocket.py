"""Binding pockets: residues of a protein in contact with a ligand, written inside the protein.

Formats (LOGOS tags verbatim):
- pocket annotation: each pocket residue wrapped ``<PocketS>X<PocketE>`` in its chain;
- SMILES-expanded pocket: each pocket residue written as its amino-acid SMILES inside the tags (a
  non-standard residue as its own SMILES from the CCD: selenomethionine keeps Se, a D-residue D stereo);
- ``<Search>`` sample: plain protein, ``<Search>``, pocket-annotated protein;
- ``<Trans>`` sample: pocket-annotated protein, ``<Trans>``, SMILES-expanded protein.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from grammar.errors import InvalidResidue, MalformedText
from grammar.lexer import TokenStream
from grammar.protein import (
    Chain,
    ChainRead,
    Protein,
    nonstandard_letter_table,
    read_chains,
    residue_smiles_table,
    write_protein,
)
from grammar.tags import POCKET_E, POCKET_S, PROTEIN_E, PROTEIN_S, SEARCH, TRANS

DEFAULT_POCKET_CUTOFF = 6.0  # Å, heavy atom to heavy atom, as PLINDER


@dataclass(frozen=True, slots=True)
class Pocket:
    """Pocket residues as (chain index, residue index) pairs into a ``Protein``'s chains.

    ``cutoff`` and ``residue_ids`` record how the pocket was found; they are not grammar content.
    """

    residues: tuple[tuple[int, int], ...]
    cutoff: float = field(default=DEFAULT_POCKET_CUTOFF, compare=False)
    residue_ids: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not self.residues:
            raise InvalidResidue("a pocket needs at least one residue")
        if list(self.residues) != sorted(set(self.residues)):
            raise InvalidResidue("pocket residues must be unique and sorted by (chain, index)")

    def positions_in_chain(self, chain_index: int) -> frozenset[int]:
        return frozenset(i for c, i in self.residues if c == chain_index)


@dataclass(frozen=True, slots=True)
class BindingSite:
    """A protein with its pocket: the object behind the annotated and expanded formats."""

    protein: Protein
    pocket: Pocket

    def __post_init__(self) -> None:
        for chain_index, residue_index in self.pocket.residues:
            if chain_index >= len(self.protein.chains):
                raise InvalidResidue(f"pocket residue on chain {chain_index}, protein has {len(self.protein.chains)}")
            if residue_index >= len(self.protein.chains[chain_index].sequence):
                raise InvalidResidue(f"pocket residue {residue_index} beyond chain {chain_index}'s length")


def _write_chain(chain: Chain, pocket_positions: frozenset[int], expanded: bool) -> str:
    """An expanded pocket residue is its own SMILES where the chain has one (``Chain.residue_smiles``: a
    modified or D-residue), else its letter's standard amino acid. A chromophore's SMILES (CRO) stands for
    the several letters it formed from (TYG), so the letters after its first are not written again."""
    table = residue_smiles_table() if expanded else None
    own = dict(chain.residue_smiles) if expanded else {}
    letters = nonstandard_letter_table() if own else {}
    parts = [PROTEIN_S]
    covered = start = 0  # letters still stood for by the chromophore SMILES written at ``start``
    for i, residue in enumerate(chain.sequence):
        if covered:
            if i in pocket_positions:
                raise InvalidResidue(f"pocket residue {i} lies inside the chromophore written at {start}")
            covered -= 1
        elif i in pocket_positions:
            smiles = (own.get(i) or table[residue]) if table else residue
            covered, start = len(letters.get(smiles, residue)) - 1, i
            parts.append(f"{POCKET_S}{smiles}{POCKET_E}")
        else:
            parts.append(residue)
    parts.append(PROTEIN_E)
    return "".join(parts)


def write_pocket(site: BindingSite, *, expanded: bool = False) -> str:
    return "".join(
        _write_chain(chain, site.pocket.positions_in_chain(c), expanded)
        for c, chain in enumerate(site.protein.chains)
    )


def site_from_chains(chains: list[ChainRead], stream: TokenStream, *, expanded: bool | None) -> BindingSite:
    """Build a ``BindingSite`` from parsed chains, checking the pocket style is the one expected."""
    styles = {c.expanded for c in chains if c.expanded is not None}
    if not styles:
        raise stream.error("no pocket residues", at=0)
    if len(styles) > 1:
        raise stream.error("chains mix one-letter and SMILES pocket residues", at=0)
    if expanded is not None and styles != {expanded}:
        want = "SMILES-expanded" if expanded else "one-letter"
        raise stream.error(f"expected {want} pocket residues", at=0)
    residues = tuple((c, i) for c, chain in enumerate(chains) for i in chain.pocket_positions)
    protein = Protein(tuple(Chain(c.sequence, residue_smiles=c.residue_smiles) for c in chains))
    return BindingSite(protein, Pocket(residues))


def parse_pocket(text: str, *, expanded: bool | None = None) -> BindingSite:
    stream = TokenStream(text)
    chains = read_chains(stream)
    stream.expect_end()
    return site_from_chains(chains, stream, expanded=expanded)


def write_search(site: BindingSite) -> str:
    return f"{write_protein(site.protein)}{SEARCH}{write_pocket(site)}"


def write_trans(site: BindingSite) -> str:
    return f"{write_pocket(site)}{TRANS}{write_pocket(site, expanded=True)}"


def _parse_pair(text: str, task_token: str, source_expanded: bool | None) -> BindingSite:
    stream = TokenStream(text)
    source = read_chains(stream)
    task_at = stream.position
    stream.expect(task_token)
    target = read_chains(stream)
    stream.expect_end()
    target_site = site_from_chains(target, stream, expanded=task_token == TRANS)
    if [c.sequence for c in source] != [c.sequence for c in target]:
        raise MalformedText(f"sequences before and after {task_token} differ", position=task_at, text=text)
    if source_expanded is None and any(c.pocket_positions for c in source):
        raise MalformedText(f"the protein before {task_token} must be plain", position=0, text=text)
    if source_expanded is False:
        source_site = site_from_chains(source, stream, expanded=False)
        if source_site.pocket != target_site.pocket:
            raise MalformedText(f"pockets before and after {task_token} differ", position=task_at, text=text)
    return target_site


def parse_search(text: str) -> BindingSite:
    return _parse_pair(text, SEARCH, source_expanded=None)


def parse_trans(text: str) -> BindingSite:
    return _parse_pair(text, TRANS, source_expanded=False)

