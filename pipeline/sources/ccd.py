"""Ligand SMILES from the wwPDB Chemical Component Dictionary (CCD), or from coordinates.

``ComponentDictionary.lookup(ccd_id)`` looks a component up in (1) a user ``components.cif(.gz)``
when one is given, else (2) the CCD bundled with biotite (atoms, charges, bond orders, aromaticity;
loaded lazily, ~3 s once per process). Lookups are cached per process. ``perceive_smiles`` is the
fallback for components no dictionary knows (UNL, new ids): bonds from the ligand's coordinates.

How a component becomes SMILES: biotite ``AtomArray`` with the CCD bonds -> RDKit (``to_mol``) ->
hydrogens removed -> metals disconnected (RDKit ``MetalDisconnector``; the grammar has no dative bonds,
and standard InChI disconnects metals too) -> sanitized -> stereo from the CCD's ideal coordinates ->
non-tetrahedral stereo (square-planar metals) dropped, the grammar writes @/@@ only -> canonical
grammar SMILES (``grammar.molecule.canonical_smiles``) -> every token checked against the grammar
vocabulary (e.g. charges beyond ±4 are not in it).
"""

from __future__ import annotations

import io
import mmap
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from rdkit import Chem
from rdkit.Chem import rdDetermineBonds
from rdkit.Chem.MolStandardize import rdMolStandardize

from grammar.errors import GrammarError
from grammar.lexer import lex
from grammar.molecule import canonical_smiles
from grammar.vocab import grammar_vocabulary
from pipeline.io import GZIP_MAGIC, read_bytes

CCD_USER = "ccd_user"
CCD_BUNDLED = "ccd_bundled"
PERCEIVED = "perceived_from_coordinates"  # bond orders from xyz2mol on a ligand with modelled hydrogens
CONNECTIVITY_ONLY = "connectivity_from_coordinates"  # single bonds only: a saturated stand-in
TETRAHEDRAL = (Chem.ChiralType.CHI_UNSPECIFIED, Chem.ChiralType.CHI_TETRAHEDRAL_CW, Chem.ChiralType.CHI_TETRAHEDRAL_CCW)


@lru_cache(maxsize=1)
def peptide_one_letter_codes() -> dict[str, str]:
    """CCD id -> one-letter code(s) of every peptide-linking component, from the CCD's own ``_chem_comp``
    table (biotite's bundled CCD): ``one_letter_code``, else the code of ``mon_nstd_parent_comp_id`` when
    that is one component. MSE -> M, DAL -> A (D-residues carry their L parent's letter, as the CCD gives),
    and a chromophore keeps the CCD's several letters (CRO -> TYG: the tripeptide it formed from, as in
    wwPDB's ``pdbx_seq_one_letter_code_can``). Components with neither map to X. Loads in ~1 s, once."""
    from biotite.structure.info.ccd import get_ccd

    table = get_ccd()["chem_comp"]
    ids = table["id"].as_array()
    codes = table["one_letter_code"].as_array()
    parents = table["mon_nstd_parent_comp_id"].as_array()
    kinds = np.char.lower(table["type"].as_array().astype(str))
    own = {
        ccd_id: code.strip().upper()
        for ccd_id, code in zip(ids.tolist(), codes.tolist(), strict=True)
        if code.strip() not in ("?", ".", "")
    }
    found = {}
    for ccd_id, parent, kind in zip(ids.tolist(), parents.tolist(), kinds.tolist(), strict=True):
        if "peptide" not in kind:
            continue
        code = own.get(ccd_id) or own.get(parent.strip(), "X")
        found[ccd_id] = code if code.isalpha() else "X"
    return found


class ComponentError(ValueError):
    """A component whose SMILES cannot be made; ``reason_code`` groups the rejects."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code


@dataclass(frozen=True, slots=True)
class ComponentSmiles:
    ccd_id: str
    smiles: str
    source: str  # CCD_USER | CCD_BUNDLED | PERCEIVED | CONNECTIVITY_ONLY
    heavy_atoms: int


class ComponentDictionary:
    """CCD lookups: a user ``components.cif(.gz)`` first (if given), then biotite's bundled CCD."""

    def __init__(
        self, components_path: str | None = None, *, use_bundled: bool = True, storage_options: dict | None = None
    ) -> None:
        self.components_path = components_path
        self.use_bundled = use_bundled
        self.storage_options = storage_options
        self._user = _ComponentFile(components_path, storage_options) if components_path else None
        self._cache: dict[str, ComponentSmiles | ComponentError | None] = {}
        self._linked: dict[tuple, ComponentSmiles | ComponentError] = {}

    def __getstate__(self) -> dict:  # ship the settings to workers, not a loaded dictionary
        return {"path": self.components_path, "bundled": self.use_bundled, "options": self.storage_options}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], use_bundled=state["bundled"], storage_options=state["options"])

    def lookup(self, ccd_id: str) -> ComponentSmiles | None:
        """The component's SMILES, or None when no dictionary knows it (or it has no atoms)."""
        return _remembered(self._cache, ccd_id, lambda: self._lookup(ccd_id))

    def linked(self, name: str, members: tuple[str, ...], links: tuple[Link, ...]) -> ComponentSmiles:
        """A branched ligand's SMILES (``linked_component_smiles``), its members looked up like single
        components: the user file first, then the bundled CCD. Cached per (members, links)."""
        def build() -> ComponentSmiles:
            if self._user is not None and all(self._user.component(m) is not None for m in members):
                return linked_component_smiles(name, members, links, self._user.component, CCD_USER)
            if self.use_bundled:
                return linked_component_smiles(name, members, links)
            raise ComponentError("unknown_component", f"{name}: a member is in no component dictionary")

        return _remembered(self._linked, (members, links), build)

    def _lookup(self, ccd_id: str) -> ComponentSmiles | None:
        if self._user is not None:
            atoms = self._user.atoms(ccd_id)
            if atoms is not None:
                return _component_smiles(ccd_id, atoms, CCD_USER)
        if self.use_bundled:
            import biotite.structure.info as info

            try:
                atoms = info.residue(ccd_id, allow_missing_coord=True)
            except KeyError:
                return None
            return _component_smiles(ccd_id, atoms, CCD_BUNDLED)
        return None


# One covalent link inside a branched entity: (member index, atom name, member index, atom name).
Link = tuple[int, str, int, str]


def _remembered(cache: dict, key: Any, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per key; a ``ComponentError`` is remembered too and raised again on every later ask
    (an entry names the same unknown component once per ligand instance)."""
    if key not in cache:
        try:
            cache[key] = compute()
        except ComponentError as exc:
            cache[key] = exc
    found = cache[key]
    if isinstance(found, ComponentError):
        raise found
    return found


def bundled_component(ccd_id: str):
    """(biotite AtomArray, leaving atom names) of a component of biotite's bundled CCD, or None."""
    import biotite.structure.info as info

    try:
        return info.residue(ccd_id, allow_missing_coord=True), _leaving_atom_names(ccd_id)
    except KeyError:
        return None


def linked_component_smiles(
    name: str, members: tuple[str, ...], links: tuple[Link, ...], component=bundled_component, source: str = CCD_BUNDLED
) -> ComponentSmiles:
    """SMILES of residues joined by the structure's links (an oligosaccharide of a branched entity).

    Each member is its CCD component (``component(ccd_id)`` -> atoms with bonds, charges and ideal
    coordinates, and the names flagged ``pdbx_leaving_atom_flag``; biotite's bundled CCD by default). A
    link bonds the two named atoms and removes, on each side, the atoms the CCD flags as leaving that hang
    on the linked atom (a glycosidic C1 loses O1 and HO1, the O4 it binds loses HO4): the glycosidic O is
    counted once. RDKit sanitization then checks every valence.

    Stereo comes from each member's ideal coordinates. A linked atom that lost a leaving atom (C1) has a
    new neighbour (the partner's O4) whose coordinates are in the partner's frame; its parity is read from
    a second conformer in which that neighbour sits where the leaving atom sat, so the result does not hang
    on which neighbours RDKit's 3D perception happens to use. Every other atom keeps its own frame.
    Checked against the CCD's whole-molecule maltose/maltotriose and against stereo perceived from
    deposited coordinates (tests/pipeline/sources/test_pdb_chemistry.py).
    """
    from biotite.interface.rdkit import to_mol

    merged = Chem.RWMol()
    coords: list[np.ndarray] = []
    index: dict[tuple[int, str], int] = {}
    member_of: list[int] = []
    leaving: set[int] = set()
    for m, ccd_id in enumerate(members):
        found = component(ccd_id)
        if found is None:
            raise ComponentError("unknown_component", f"{name}: member {ccd_id} is in no chemical component dictionary")
        atoms, flags = found
        offset = merged.GetNumAtoms()
        try:
            merged.InsertMol(to_mol(atoms))
        except Exception as exc:  # biotite raises several types for odd bond/charge tables
            raise ComponentError("ccd_conversion_failed", f"{name}: member {ccd_id}: {exc}") from exc
        coords.append(np.asarray(atoms.coord, dtype=np.float64))
        for k, atom_name in enumerate(atoms.atom_name.tolist()):
            index[(m, atom_name)] = offset + k
            member_of.append(m)
            if atom_name in flags:
                leaving.add(offset + k)
    position = np.concatenate(coords)
    moved = position.copy()  # the second conformer: partners placed where the leaving atoms were
    linked_carbons: set[int] = set()
    removed: set[int] = set()
    for m1, atom1, m2, atom2 in links:
        try:
            one, two = index[(m1, atom1)], index[(m2, atom2)]
        except KeyError as exc:
            raise ComponentError("invalid_link", f"{name}: link atom {exc.args[0]} is not in its component") from None
        merged.AddBond(one, two, Chem.BondType.SINGLE)
        for this, other in ((one, two), (two, one)):
            gone = _leaving_group(merged, this, leaving, member_of)
            heavy = [i for i in gone if merged.GetAtomWithIdx(i).GetAtomicNum() > 1]
            if heavy:
                linked_carbons.add(this)
                moved[other] = position[heavy[0]]
            removed |= gone
    kept = [i for i in range(merged.GetNumAtoms()) if i not in removed]
    merged.BeginBatchEdit()
    for i in removed:
        merged.RemoveAtom(i)
    merged.CommitBatchEdit()
    new_index = {old: new for new, old in enumerate(kept)}
    mol = merged.GetMol()
    try:
        Chem.SanitizeMol(mol)
    except Exception as exc:  # RDKit raises one of several sanitization exception types
        raise ComponentError("invalid_smiles", f"{name}: linked residues fail sanitization: {exc}") from exc
    own_frames = _chiral_tags(mol, position[kept])
    link_frames = _chiral_tags(mol, moved[kept])
    carbons = {new_index[i] for i in linked_carbons}
    for atom in mol.GetAtoms():
        tags = link_frames if atom.GetIdx() in carbons else own_frames
        atom.SetChiralTag(tags[atom.GetIdx()])
    smiles = finish_smiles(mol, name, stereo_from_3d=False)
    heavy = sum(atom.GetAtomicNum() > 1 for atom in mol.GetAtoms())
    return ComponentSmiles(name, smiles, source, heavy)


def _leaving_group(mol: Chem.RWMol, atom: int, leaving: set[int], member_of: list[int]) -> set[int]:
    """Atoms flagged leaving that hang on ``atom`` within its own residue, with their leaving neighbours
    and the hydrogens of any leaving heavy atom. Older CCD entries flag O1 but not the hydroxyl hydrogens
    (HO1, HO4): where nothing flagged hangs on ``atom``, the link takes one of its hydrogens."""
    found: set[int] = set()
    stack = [n.GetIdx() for n in mol.GetAtomWithIdx(atom).GetNeighbors()]
    while stack:
        i = stack.pop()
        if i in found or member_of[i] != member_of[atom]:
            continue
        hydrogen_of_leaving = mol.GetAtomWithIdx(i).GetAtomicNum() == 1 and any(
            n.GetIdx() in found for n in mol.GetAtomWithIdx(i).GetNeighbors()
        )
        if i not in leaving and not hydrogen_of_leaving:
            continue
        found.add(i)
        stack.extend(n.GetIdx() for n in mol.GetAtomWithIdx(i).GetNeighbors() if n.GetIdx() != atom)
    if not found:
        hydrogens = [n.GetIdx() for n in mol.GetAtomWithIdx(atom).GetNeighbors() if n.GetAtomicNum() == 1]
        found = set(hydrogens[:1])
    return found


def _chiral_tags(mol: Chem.Mol, coordinates: np.ndarray) -> list[Chem.ChiralType]:
    copy = Chem.Mol(mol)
    conformer = Chem.Conformer(copy.GetNumAtoms())
    for i, xyz in enumerate(coordinates.tolist()):
        conformer.SetAtomPosition(i, xyz)
    copy.RemoveAllConformers()
    copy.AddConformer(conformer, assignId=True)
    Chem.AssignStereochemistryFrom3D(copy)
    return [atom.GetChiralTag() for atom in copy.GetAtoms()]


@lru_cache(maxsize=4096)
def _leaving_atom_names(ccd_id: str) -> frozenset[str]:
    """Atom names the bundled CCD flags ``pdbx_leaving_atom_flag = Y`` (biotite's AtomArray lacks them)."""
    from biotite.structure.info.ccd import get_ccd

    table = get_ccd()["chem_comp_atom"]
    rows = _leaving_flag_rows()
    start, end = rows.get(ccd_id, (0, 0))
    names = table["atom_id"].as_array()[start:end].tolist()
    flags = table["pdbx_leaving_atom_flag"].as_array()[start:end].tolist()
    return frozenset(n for n, flag in zip(names, flags, strict=True) if flag == "Y")


@lru_cache(maxsize=1)
def _leaving_flag_rows() -> dict[str, tuple[int, int]]:
    """Row range of each component in the CCD's ``chem_comp_atom`` (rows are grouped by component)."""
    from biotite.structure.info.ccd import get_ccd

    comp = get_ccd()["chem_comp_atom"]["comp_id"].as_array()
    starts = np.flatnonzero(np.r_[True, comp[1:] != comp[:-1]])
    ends = np.r_[starts[1:], len(comp)]
    return {str(comp[s]): (int(s), int(e)) for s, e in zip(starts, ends, strict=True)}


def _component_smiles(ccd_id: str, atoms, source: str) -> ComponentSmiles | None:
    from biotite.interface.rdkit import to_mol
    from biotite.structure import BondList

    if atoms.array_length() == 0:
        return None
    if atoms.bonds is None:  # one-atom components (ions) have no chem_comp_bond category
        atoms.bonds = BondList(atoms.array_length())
    try:
        mol = to_mol(atoms)
    except Exception as exc:  # biotite raises several types for odd bond/charge tables
        raise ComponentError("ccd_conversion_failed", f"CCD {ccd_id}: no RDKit molecule: {exc}") from exc
    smiles = finish_smiles(mol, ccd_id, stereo_from_3d=bool(np.isfinite(atoms.coord).all()))
    return ComponentSmiles(ccd_id, smiles, source, int((atoms.element != "H").sum()))


def finish_smiles(mol: Chem.Mol, name: str, *, stereo_from_3d: bool) -> str:
    """RDKit molecule (with a conformer when ``stereo_from_3d``) -> canonical grammar SMILES."""
    mol = Chem.RemoveHs(mol, sanitize=False)
    mol = rdMolStandardize.MetalDisconnector().Disconnect(mol)
    try:
        Chem.SanitizeMol(mol)
    except Exception as exc:  # RDKit raises one of several sanitization exception types
        raise ComponentError("invalid_smiles", f"{name}: molecule fails sanitization: {exc}") from exc
    if stereo_from_3d and mol.GetNumConformers():
        Chem.AssignStereochemistryFrom3D(mol)
    for atom in mol.GetAtoms():
        if atom.GetChiralTag() not in TETRAHEDRAL:
            atom.SetChiralTag(Chem.ChiralType.CHI_UNSPECIFIED)
    try:
        smiles = canonical_smiles(Chem.MolToSmiles(mol))
    except GrammarError as exc:
        raise ComponentError("invalid_smiles", f"{name}: {exc}") from exc
    _check_vocabulary(smiles, name)
    return smiles


def _check_vocabulary(smiles: str, name: str) -> None:
    """One reject per ligand here beats one tokenizer reject per sample later (seven of them)."""
    known = grammar_vocabulary().ids
    try:
        unknown = sorted({token.text for token in lex(smiles)} - known.keys())
    except GrammarError as exc:
        unknown = [str(exc)]
    if unknown:
        raise ComponentError("unknown_token", f"{name}: SMILES {smiles} has tokens outside the grammar: {unknown}")


def perceive_smiles(
    name: str, elements: list[str], positions: np.ndarray, charge: int, *, allow_connectivity_only: bool
) -> ComponentSmiles:
    """SMILES of a ligand no dictionary knows, from its modelled atoms (hydrogens included if any).

    Bond orders need hydrogens: xyz2mol (RDKit ``DetermineBonds``) on heavy atoms alone either fails
    or invents unsaturation. Without hydrogens only connectivity is known, and a single-bonded stand-in
    is a different molecule, so it is made only when ``allow_connectivity_only``.
    """
    mol = Chem.RWMol()
    conformer = Chem.Conformer(len(elements))
    for i, (element, position) in enumerate(zip(elements, positions, strict=True)):
        number = _atomic_number(element)
        if number <= 0:
            raise ComponentError("unknown_element", f"{name}: atom {i} has unknown element {element!r}")
        mol.AddAtom(Chem.Atom(number))
        conformer.SetAtomPosition(i, [float(x) for x in position])
    mol.AddConformer(conformer, assignId=True)
    heavy = sum(e.upper() not in ("H", "D") for e in elements)
    if heavy < len(elements):
        try:
            perceived = Chem.Mol(mol)
            rdDetermineBonds.DetermineBonds(perceived, charge=charge)
            return ComponentSmiles(name, finish_smiles(perceived, name, stereo_from_3d=True), PERCEIVED, heavy)
        except (ValueError, RuntimeError, ComponentError):
            pass
    if not allow_connectivity_only:
        raise ComponentError(
            "no_bond_orders", f"{name}: not in the CCD, and its coordinates do not give bond orders (no hydrogens)"
        )
    heavy_only = Chem.RWMol(Chem.RemoveHs(mol, sanitize=False))
    rdDetermineBonds.DetermineConnectivity(heavy_only)
    return ComponentSmiles(name, finish_smiles(heavy_only, name, stereo_from_3d=True), CONNECTIVITY_ONLY, heavy)


def _atomic_number(symbol: str) -> int:
    try:
        return Chem.GetPeriodicTable().GetAtomicNumber(symbol.capitalize())
    except RuntimeError:  # RDKit's answer to an unknown symbol ('X' in unknown atoms)
        return 0


class _ComponentFile:
    """A ``components.cif(.gz)`` indexed by block; a plain local file is memory-mapped, not read."""

    BLOCK = re.compile(rb"^data_(\S+)[ \t]*\r?$", re.MULTILINE)

    def __init__(self, uri: str, storage_options: dict | None = None) -> None:
        self.uri = uri
        self.storage_options = storage_options
        self._data: bytes | mmap.mmap | None = None
        self._blocks: dict[str, tuple[int, int]] = {}

    def _load(self) -> None:
        self._data = _map_or_read(self.uri, self.storage_options)
        starts = [(m.group(1).decode(), m.start()) for m in self.BLOCK.finditer(self._data)]
        ends = [start for _, start in starts[1:]] + [len(self._data)]
        self._blocks = {name: (start, end) for (name, start), end in zip(starts, ends, strict=True)}

    def atoms(self, ccd_id: str):
        """The component as a biotite ``AtomArray`` with bonds, or None if the file lacks it."""
        import biotite.structure.io.pdbx as pdbx

        block = self._block(ccd_id)
        if block is None or "chem_comp_atom" not in block.block:
            return None
        try:
            with warnings.catch_warnings():  # one-atom components lack chem_comp_bond: expected
                warnings.simplefilter("ignore", UserWarning)
                atoms = pdbx.get_component(block, use_ideal_coord=True, allow_missing_coord=True)
                if not np.isfinite(atoms.coord).all():
                    atoms = pdbx.get_component(block, use_ideal_coord=False, allow_missing_coord=True)
        except Exception as exc:  # biotite raises several types for incomplete CIF categories
            raise ComponentError("ccd_conversion_failed", f"{self.uri} block {ccd_id}: {exc}") from exc
        return atoms

    def component(self, ccd_id: str):
        """(atoms, names flagged ``pdbx_leaving_atom_flag = Y``), or None if the file lacks the component."""
        atoms = self.atoms(ccd_id)
        if atoms is None:
            return None
        category = self._block(ccd_id).block["chem_comp_atom"]
        if "pdbx_leaving_atom_flag" not in category:
            return atoms, frozenset()
        names = category["atom_id"].as_array().tolist()
        flags = category["pdbx_leaving_atom_flag"].as_array().tolist()
        return atoms, frozenset(n for n, flag in zip(names, flags, strict=True) if flag == "Y")

    def _block(self, ccd_id: str):
        import biotite.structure.io.pdbx as pdbx

        if self._data is None:
            self._load()
        if ccd_id not in self._blocks:
            return None
        start, end = self._blocks[ccd_id]
        return pdbx.CIFFile.read(io.StringIO(self._data[start:end].decode("utf-8", "replace")))


def _map_or_read(uri: str, storage_options: dict | None) -> bytes | mmap.mmap:
    """Memory-map a plain local file (the full CCD is ~400 MB); read anything else into memory."""
    if "://" not in uri or uri.startswith("file://"):
        path = uri.removeprefix("file://")
        with open(path, "rb") as handle:
            if handle.read(2) != GZIP_MAGIC:
                return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    return read_bytes(uri, storage_options)
