"""Small molecules: ``<MoleculeS>SMILES<MoleculeE>``, with RDKit canonical isomeric SMILES."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from rdkit import Chem, RDLogger

from grammar.errors import InvalidSmiles
from grammar.lexer import TokenStream
from grammar.tags import MOLECULE_E, MOLECULE_S

RDLogger.DisableLog("rdApp.*")  # errors are raised with their reason instead of printed


@dataclass(frozen=True, slots=True)
class Molecule:
    """A molecule as canonical SMILES. ``source_id`` (e.g. a ChEMBL id) is provenance, not content."""

    smiles: str
    source_id: str | None = field(default=None, compare=False)

    @classmethod
    def from_smiles(cls, smiles: str, source_id: str | None = None) -> Molecule:
        return cls(canonical_smiles(smiles), source_id)


def mol_from_smiles(smiles: str, *, position: int | None = None, text: str | None = None) -> Chem.Mol:
    """Parse and sanitize (RDKit's standard path), raising ``InvalidSmiles`` with RDKit's own reason."""
    if not smiles or not smiles.strip():
        raise InvalidSmiles("empty SMILES", position=position, text=text)
    mol = Chem.MolFromSmiles(smiles)
    if mol is not None:
        return mol
    # Failed: parse without sanitizing to tell a syntax error from a chemistry (valence, kekulization) error.
    unsanitized = Chem.MolFromSmiles(smiles, sanitize=False)
    if unsanitized is None:
        raise InvalidSmiles(f"unparsable SMILES {smiles!r}", position=position, text=text)
    try:
        Chem.SanitizeMol(unsanitized)
    except Exception as exc:  # RDKit raises several sanitization exception types
        raise InvalidSmiles(f"SMILES {smiles!r} fails sanitization: {exc}", position=position, text=text) from exc
    raise InvalidSmiles(f"SMILES {smiles!r} rejected by RDKit", position=position, text=text)


@lru_cache(maxsize=65536)
def canonical_smiles(smiles: str) -> str:
    return Chem.MolToSmiles(mol_from_smiles(smiles))


def inchikey(smiles: str) -> str:
    """InChIKey of a SMILES, or '' where InChI cannot represent it (e.g. some organometallics)."""
    return Chem.MolToInchiKey(mol_from_smiles(smiles)) or ""


def write_molecule(molecule: Molecule) -> str:
    return f"{MOLECULE_S}{molecule.smiles}{MOLECULE_E}"


def read_molecule_block(stream: TokenStream) -> Molecule:
    """Read one ``<MoleculeS>…<MoleculeE>`` block from the stream; validate and canonicalize."""
    stream.expect(MOLECULE_S)
    smiles, start = stream.take_until([MOLECULE_E])
    stream.expect(MOLECULE_E)
    mol = mol_from_smiles(smiles, position=start, text=stream.text)
    return Molecule(Chem.MolToSmiles(mol))


def parse_molecule(text: str) -> Molecule:
    stream = TokenStream(text)
    molecule = read_molecule_block(stream)
    stream.expect_end()
    return molecule


# --- SMILES token inventory -------------------------------------------------------------------------
# Atom-level tokens: organic-subset atoms, Cl/Br whole, bonds and branches, ring closures 0-9 and
# %10-%99, and bracket atoms whole. Bracket atoms are an open set; the vocabulary enumerates every
# combination of element (all 118, plus aromatic forms), chirality (@, @@), hydrogen count (0-4) and
# charge (0, ±1..±4), plus the isotopes met in ChEMBL/PDB ligands (deuterium, tracers,
# radiopharmaceuticals). Anything else (atom-map classes, exotic charges) is an unknown token: a clear
# error, never a silent split.
ORGANIC_SUBSET = ("B", "C", "N", "O", "P", "S", "F", "Cl", "Br", "I", "b", "c", "n", "o", "p", "s", "*")
BOND_AND_BRANCH = ("-", "=", "#", "$", ":", "/", "\\", "(", ")", ".")
RING_CLOSURES = tuple(str(d) for d in range(10)) + tuple(f"%{d}" for d in range(10, 100))
AROMATIC_BRACKET_SYMBOLS = ("b", "c", "n", "o", "p", "s", "se", "te", "as")
CHIRALITIES = ("", "@", "@@")
HYDROGEN_COUNTS = ("", "H", "H2", "H3", "H4")
CHARGES = ("", "+", "-", "+2", "-2", "+3", "-3", "+4", "-4")
ISOTOPES: dict[str, tuple[int, ...]] = {
    "H": (2, 3), "C": (11, 13, 14), "c": (13, 14), "N": (13, 15), "n": (15,), "O": (15, 17, 18), "F": (18,),
    "P": (32, 33), "S": (34, 35), "Cl": (36, 37), "Br": (75, 76, 77, 82), "I": (123, 124, 125, 131),
    "Se": (75,), "Cu": (64, 67), "Ga": (67, 68), "Zr": (89,), "Y": (86, 90), "In": (111,), "Tc": (99,),
    "Lu": (177,), "Tl": (201,), "Ac": (225,), "At": (211,), "Sm": (153,), "Re": (186, 188), "Ra": (223,),
    "Rb": (82,), "Sr": (89,), "Xe": (133,), "Co": (57, 58, 60), "Fe": (59,), "Cr": (51,), "Sc": (44, 47),
    "Tb": (161,), "Pb": (203, 212), "Bi": (213,), "Ho": (166,), "Cs": (137,), "Au": (198,), "Ir": (192,),
    "Pd": (103,), "Sn": (117,), "Te": (123,), "B": (10, 11), "Si": (29,), "Li": (6, 7), "Na": (22,),
    "K": (40,), "Ca": (45,), "Mn": (52,), "Zn": (65,), "Ba": (133,),
}


@lru_cache(maxsize=1)
def element_symbols() -> tuple[str, ...]:
    table = Chem.GetPeriodicTable()
    return tuple(table.GetElementSymbol(z) for z in range(1, 119))


@lru_cache(maxsize=1)
def smiles_tokens() -> tuple[str, ...]:
    """Every SMILES token of the vocabulary, in vocabulary order."""
    tokens = list(ORGANIC_SUBSET) + list(BOND_AND_BRANCH) + list(RING_CLOSURES)
    for symbol in element_symbols() + AROMATIC_BRACKET_SYMBOLS:
        tokens += [f"[{symbol}{c}{h}{q}]" for c in CHIRALITIES for h in HYDROGEN_COUNTS for q in CHARGES]
    for symbol, masses in ISOTOPES.items():
        tokens += [
            f"[{mass}{symbol}{c}{h}{q}]" for mass in masses for c in CHIRALITIES for h in HYDROGEN_COUNTS
            for q in ("", "+", "-")
        ]
    return tuple(dict.fromkeys(tokens))
