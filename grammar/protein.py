"""Proteins: ``<ProteinS>SEQ<ProteinE>``, one block per chain, one token per residue.

The chain reader here also understands pocket annotations inside a chain (``<PocketS>X<PocketE>`` or
``<PocketS>residue-SMILES<PocketE>``), so that every protein-bearing format shares one parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from rdkit import Chem

from grammar.errors import InvalidResidue
from grammar.lexer import TokenStream
from grammar.molecule import mol_from_smiles
from grammar.tags import POCKET_E, POCKET_S, PROTEIN_E, PROTEIN_S

STANDARD_AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
# X: unknown or unmappable residue; U: selenocysteine; O: pyrrolysine.
RESIDUE_ALPHABET = STANDARD_AMINO_ACIDS + "XUO"
_RESIDUES = frozenset(RESIDUE_ALPHABET)

# RDKit's MolFromSequence knows the 20 standard residues only; SEC and PYL are written from their CCD
# entries (tests check them against biotite's bundled CCD). X, unknown, is the SMILES wildcard atom.
_CCD_ONLY_RESIDUE_SMILES = {
    "U": "N[C@@H](C[SeH])C(=O)O",
    "O": "C[C@@H]1CC=N[C@H]1C(=O)NCCCC[C@H](N)C(=O)O",
}
UNKNOWN_RESIDUE_SMILES = "*"
# Non-standard amino acids (MSE, SEP, DAL, ...) as the CCD defines them: ccd_id, letter, SMILES. Made from the
# CCD by ``pipeline.sources.residue_table``; read here to parse a SMILES-expanded pocket residue back.
NONSTANDARD_RESIDUES_PATH = Path(__file__).with_name("data") / "nonstandard_residues.tsv"


@lru_cache(maxsize=1)
def residue_smiles_table() -> dict[str, str]:
    """One-letter code -> canonical SMILES of the free amino acid."""
    table = {aa: Chem.MolToSmiles(Chem.MolFromSequence(aa)) for aa in STANDARD_AMINO_ACIDS}
    table.update({aa: Chem.MolToSmiles(Chem.MolFromSmiles(s)) for aa, s in _CCD_ONLY_RESIDUE_SMILES.items()})
    table["X"] = UNKNOWN_RESIDUE_SMILES
    return table


@lru_cache(maxsize=1)
def residue_from_smiles_table() -> dict[str, str]:
    return {smiles: aa for aa, smiles in residue_smiles_table().items()}


@lru_cache(maxsize=1)
def nonstandard_residues() -> dict[str, tuple[str, str]]:
    """CCD id -> (one-letter code, canonical SMILES) of the CCD's non-standard amino acids."""
    rows = (line.split("\t") for line in NONSTANDARD_RESIDUES_PATH.read_text().splitlines() if line[:1] != "#")
    return {ccd_id: (letter, smiles) for ccd_id, letter, smiles in rows}


@lru_cache(maxsize=1)
def nonstandard_letter_table() -> dict[str, str]:
    """Canonical SMILES -> one-letter code of the non-standard amino acids (each SMILES has one letter)."""
    return {smiles: letter for letter, smiles in nonstandard_residues().values()}


def residue_for_smiles(smiles: str, *, position: int | None = None, text: str | None = None) -> tuple[str, bool]:
    """(one-letter code(s), is non-standard) of a pocket residue written as SMILES: a standard residue's
    SMILES, or a non-standard amino acid of the CCD (``nonstandard_residues``; a chromophore gives the
    several letters of the tripeptide it formed from, CRO -> TYG)."""
    table, other = residue_from_smiles_table(), nonstandard_letter_table()
    if smiles in table:
        return table[smiles], False
    if smiles in other:
        return other[smiles], True
    canonical = Chem.MolToSmiles(mol_from_smiles(smiles, position=position, text=text))
    if canonical in table:
        return table[canonical], False
    if canonical in other:
        return other[canonical], True
    raise InvalidResidue(f"SMILES {smiles!r} is not an amino-acid residue", position=position, text=text)


@dataclass(frozen=True, slots=True)
class Chain:
    """One polymer chain. Only ``sequence`` is grammar content; ids are provenance.

    ``residue_smiles`` holds (position, SMILES) of non-standard residues (selenomethionine, D-residues):
    a SMILES-expanded pocket writes that SMILES instead of the letter's standard one (a chromophore's, at
    its first letter, instead of all the letters it stands for: CRO's SMILES for TYG). Only expanded texts
    carry it, so it is not part of equality (a one-letter text of the same chain equals it).
    """

    sequence: str
    chain_id: str = field(default="", compare=False)
    residue_ids: tuple[str, ...] = field(default=(), compare=False)
    residue_smiles: tuple[tuple[int, str], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not self.sequence:
            raise InvalidResidue(f"chain {self.chain_id!r} has an empty sequence")
        # The set test runs in C; only a sequence that fails it is walked to name the first bad residue.
        if not _RESIDUES.issuperset(self.sequence):
            i, residue = next((i, r) for i, r in enumerate(self.sequence) if r not in _RESIDUES)
            raise InvalidResidue(
                f"chain {self.chain_id!r} residue {i} is {residue!r}, not in the alphabet {RESIDUE_ALPHABET}"
            )
        if self.residue_ids and len(self.residue_ids) != len(self.sequence):
            raise InvalidResidue(
                f"chain {self.chain_id!r}: {len(self.residue_ids)} residue ids for {len(self.sequence)} residues"
            )


@dataclass(frozen=True, slots=True)
class Protein:
    chains: tuple[Chain, ...]
    source_id: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.chains:
            raise InvalidResidue("a protein needs at least one chain")

    @classmethod
    def from_sequences(cls, *sequences: str, source_id: str | None = None) -> Protein:
        return cls(tuple(Chain(s) for s in sequences), source_id)


def write_protein(protein: Protein) -> str:
    return "".join(f"{PROTEIN_S}{chain.sequence}{PROTEIN_E}" for chain in protein.chains)


@dataclass(frozen=True, slots=True)
class ChainRead:
    """What one ``<ProteinS>…<ProteinE>`` block held: residues, pocket positions and the pocket style."""

    sequence: str
    pocket_positions: tuple[int, ...]
    expanded: bool | None  # None: no pocket residues; True: residues written as SMILES
    residue_smiles: tuple[tuple[int, str], ...] = ()  # (position, SMILES) of non-standard pocket residues


def read_chain(stream: TokenStream) -> ChainRead:
    stream.expect(PROTEIN_S)
    residues: list[str] = []
    pocket: list[int] = []
    styles: set[bool] = set()
    nonstandard: list[tuple[int, str]] = []
    while stream.peek() != PROTEIN_E:
        token = stream.peek()
        if token is None:
            raise stream.error(f"unterminated chain: expected {PROTEIN_E}")
        if token == POCKET_S:
            stream.next()
            content, start = stream.take_until([POCKET_E])
            stream.expect(POCKET_E)
            if len(content) == 1 and content in _RESIDUES:
                residue, expanded = content, False
            else:
                residue, modified = residue_for_smiles(content, position=start, text=stream.text)
                expanded = True
                if modified:
                    nonstandard.append((len(residues), content))
            styles.add(expanded)
            pocket.append(len(residues))
            residues.extend(residue)  # a chromophore's SMILES stands for several letters, marked on its first
            continue
        if token not in _RESIDUES:
            raise stream.error(f"{token!r} is not a residue of the alphabet {RESIDUE_ALPHABET}", InvalidResidue)
        residues.append(stream.next().text)
    stream.expect(PROTEIN_E)
    if not residues:
        raise stream.error("empty chain", InvalidResidue)
    if len(styles) > 1:
        raise stream.error("a chain mixes one-letter and SMILES pocket residues")
    return ChainRead("".join(residues), tuple(pocket), styles.pop() if styles else None, tuple(nonstandard))


def read_chains(stream: TokenStream) -> list[ChainRead]:
    chains = [read_chain(stream)]
    while stream.peek() == PROTEIN_S:
        chains.append(read_chain(stream))
    return chains


def parse_protein(text: str) -> Protein:
    stream = TokenStream(text)
    chains = read_chains(stream)
    stream.expect_end()
    for chain in chains:
        if chain.pocket_positions:
            raise stream.error("a plain protein has no pocket annotations", at=0)
    return Protein(tuple(Chain(c.sequence) for c in chains))
