"""Metal-organic frameworks as building blocks.

``<MaterialS><MetalS>node<MetalE>…<MoleculeS>linker<MoleculeE>…<MaterialE>``:

Nodes (metal ions or clusters, e.g. ``[Zn+2]``, ``[Cu][Cu]``) come first, then the organic linkers;
each part is RDKit-canonical SMILES, and each list is sorted and free of repeats, so the same framework
always reads the same. The text names the building blocks, not the topology or the cell.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pymatgen.core import Element
from rdkit import Chem

from grammar.errors import InvalidSmiles, MalformedText
from grammar.lexer import TokenStream
from grammar.molecule import Molecule, canonical_smiles, mol_from_smiles, read_molecule_block, write_molecule
from grammar.tags import MATERIAL_E, MATERIAL_S, METAL_E, METAL_S, MOLECULE_S


def is_metal(symbol: str) -> bool:
    """pymatgen's metals: alkali, alkaline-earth, transition, post-transition, rare-earth, actinide."""
    return Element(symbol).is_metal


def _check_node(smiles: str, mol: Chem.Mol, position: int | None, text: str | None) -> None:
    if not any(is_metal(atom.GetSymbol()) for atom in mol.GetAtoms()):
        raise InvalidSmiles(f"MOF node {smiles!r} has no metal atom", position=position, text=text)


def _check_blocks(kind: str, blocks: tuple[str, ...]) -> None:
    if not blocks:
        raise MalformedText(f"a MOF needs at least one {kind}")
    if list(blocks) != sorted(set(blocks)):
        raise MalformedText(f"MOF {kind}s must be sorted canonical SMILES without repeats, got {list(blocks)}")


@dataclass(frozen=True, slots=True)
class MOF:
    nodes: tuple[str, ...]  # canonical SMILES of metal nodes
    linkers: tuple[Molecule, ...]
    source_id: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check_blocks("node", self.nodes)
        _check_blocks("linker", tuple(m.smiles for m in self.linkers))

    @classmethod
    def from_smiles(cls, nodes: Iterable[str], linkers: Iterable[str], source_id: str | None = None) -> MOF:
        """Canonicalize, validate (every node holds a metal), sort and drop repeats."""
        node_set = set()
        for smiles in nodes:
            mol = mol_from_smiles(smiles)
            _check_node(smiles, mol, None, None)
            node_set.add(Chem.MolToSmiles(mol))
        linker_set = {canonical_smiles(smiles) for smiles in linkers}
        return cls(tuple(sorted(node_set)), tuple(Molecule(s) for s in sorted(linker_set)), source_id)


def write_mof(mof: MOF) -> str:
    nodes = "".join(f"{METAL_S}{node}{METAL_E}" for node in mof.nodes)
    return f"{MATERIAL_S}{nodes}{''.join(write_molecule(m) for m in mof.linkers)}{MATERIAL_E}"


def _read_node(stream: TokenStream) -> str:
    stream.expect(METAL_S)
    smiles, start = stream.take_until([METAL_E])
    stream.expect(METAL_E)
    mol = mol_from_smiles(smiles, position=start, text=stream.text)
    _check_node(smiles, mol, start, stream.text)
    return Chem.MolToSmiles(mol)


def _unique_sorted(stream: TokenStream, kind: str, items: list[tuple[str, int]]) -> tuple[str, ...]:
    seen: set[str] = set()
    for smiles, at in items:
        if smiles in seen:
            raise stream.error(f"{kind} {smiles!r} appears twice", at=at)
        seen.add(smiles)
    return tuple(sorted(seen))


def parse_mof(text: str) -> MOF:
    """Any block order within nodes and within linkers is accepted; repeats are errors."""
    stream = TokenStream(text)
    stream.expect(MATERIAL_S)
    nodes = []
    while stream.peek() == METAL_S:
        at = stream.position
        nodes.append((_read_node(stream), at))
    if not nodes:
        raise stream.error(f"a MOF starts with a {METAL_S} node block")
    linkers = []
    while stream.peek() == MOLECULE_S:
        at = stream.position
        linkers.append((read_molecule_block(stream).smiles, at))
    if not linkers:
        raise stream.error(f"a MOF needs at least one {MOLECULE_S} linker block after its nodes")
    if stream.peek() == METAL_S:
        raise stream.error("node blocks come before all linker blocks")
    stream.expect(MATERIAL_E)
    stream.expect_end()
    node_smiles = _unique_sorted(stream, "node", nodes)
    linker_smiles = _unique_sorted(stream, "linker", linkers)
    return MOF(node_smiles, tuple(Molecule(s) for s in linker_smiles))
