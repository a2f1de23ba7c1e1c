"""Pockets against an independent neighbour search, and pocket positions against the entry's own tables.

The reference reads each file with biotite (its own mmCIF/PDB parser and highest-occupancy altloc
filter) and finds pocket residues with biotite's ``CellList``; the code under test reads with gemmi and
searches with a scipy KD-tree. Positions in the grammar text are checked against the mmCIF's
``_pdbx_poly_seq_scheme`` (author residue id -> sequence position), a table the source never reads.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import biotite.structure as struc
import biotite.structure.io.pdb as pdb
import biotite.structure.io.pdbx as pdbx
import gemmi
import numpy as np
import pytest

from grammar.formats import FORMATS
from pipeline.records import Sample
from pipeline.sources.pdb import DEFAULT_EXCLUDED, PdbConfig, PdbSource
from pipeline.sources.pdb_structure import load_entry

DATA = Path(__file__).resolve().parents[2] / "data" / "pdb"
ENTRIES = ["mmcif/3o5r.cif", "mmcif/4i39.cif", "mmcif/5h73.cif", "mmcif/7gsa.cif", "mmcif/1k6p.cif",
           "legacy_pdb/3o5r.pdb", "legacy_pdb/1hvr.pdb"]
THREE_TO_ONE = {
    "ALA": "A", "ARG": "R", "ASN": "N", "ASP": "D", "CYS": "C", "GLN": "Q", "GLU": "E", "GLY": "G", "HIS": "H",
    "ILE": "I", "LEU": "L", "LYS": "K", "MET": "M", "PHE": "F", "PRO": "P", "SER": "S", "THR": "T", "TRP": "W",
    "TYR": "Y", "VAL": "V",
}


@cache
def complexes(relative: str, cutoff: float) -> list[Sample]:
    # BioLiP's artefact list names 4I39's chromophore HC4 and 5H73's orotate ORO; kept for the pocket checks.
    source = PdbSource(PdbConfig(pocket_cutoff=cutoff, excluded_components=DEFAULT_EXCLUDED - {"HC4", "ORO"}))
    [item] = source.read(str(DATA / relative))
    return [s for s in source.convert(item).samples if s.task == "complex_residue_surface_smiles"]


@cache
def biotite_atoms(relative: str) -> struc.AtomArray:
    """Heavy atoms of model 1 after the altloc filter, with a ``protein`` annotation: residues of
    polypeptide(L) entities (mmCIF) or residues named in the chain's SEQRES (PDB)."""
    path = DATA / relative
    if path.suffix == ".cif":
        cif = pdbx.CIFFile.read(str(path))
        atoms = pdbx.get_structure(cif, model=1, altloc="all", extra_fields=["occupancy", "label_entity_id"])
        atoms = atoms[_highest_occupancy(atoms)]
        poly = cif.block["entity_poly"]
        peptides = [e for e, t in zip(poly["entity_id"].as_array(str), poly["type"].as_array(str), strict=True)
                    if t == "polypeptide(L)"]
        protein = np.isin(atoms.label_entity_id, peptides)
    else:
        atoms = pdb.PDBFile.read(str(path)).get_structure(model=1, altloc="occupancy")
        seqres = {}
        for line in path.read_text().splitlines():
            if line.startswith("SEQRES"):
                seqres.setdefault(line[11], set()).update(line[19:70].split())
        pairs = zip(atoms.chain_id, atoms.res_name, strict=True)
        protein = np.array([name in seqres.get(chain, ()) for chain, name in pairs])
    atoms.set_annotation("protein", protein)
    return atoms[(atoms.element != "H") & (atoms.element != "D") & ~struc.filter_solvent(atoms)]


def _highest_occupancy(atoms: struc.AtomArray) -> np.ndarray:
    """biotite's own altloc filter, extended to the numeric altloc ids of 1K6P (biotite only takes letters)."""
    keep = np.isin(atoms.altloc_id, [".", "?", " ", ""])
    ids = np.char.add(np.char.add(atoms.chain_id, "|"), np.char.add(atoms.res_id.astype(str), atoms.ins_code))
    for residue in np.unique(ids[~keep]):
        here = ids == residue
        means = {alt: atoms.occupancy[here & (atoms.altloc_id == alt)].mean()
                 for alt in sorted(set(atoms.altloc_id[here]) - {".", "?", " ", ""})}
        best = max(means, key=lambda alt: (means[alt], -sorted(means).index(alt)))
        keep |= here & (atoms.altloc_id == best)
    return keep


def reference_pocket(relative: str, instance: str, ccd_id: str, cutoff: float) -> list[str]:
    atoms = biotite_atoms(relative)
    chain, number = instance.split(":")
    ligand = atoms[(atoms.chain_id == chain) & (atoms.res_name == ccd_id)
                   & (np.char.add(atoms.res_id.astype(str), atoms.ins_code) == number)]
    protein = atoms[atoms.protein]
    cells = struc.CellList(protein, cell_size=cutoff)
    near = cells.get_atoms(ligand.coord, radius=cutoff)
    hits = np.unique(near[near >= 0])
    return sorted({f"{protein.chain_id[i]}:{protein.res_id[i]}{protein.ins_code[i]}" for i in hits})


CASES = [(entry, cutoff) for entry in ENTRIES for cutoff in (4.0, 6.0)]


@pytest.mark.parametrize(("relative", "cutoff"), CASES, ids=[f"{e.split('/')[1]}-{c}" for e, c in CASES])
def test_pocket_residues_equal_an_independent_neighbour_search(relative: str, cutoff: float) -> None:
    samples = complexes(relative, cutoff)
    assert samples, "every entry here has a ligand in a pocket"
    for sample in samples:
        meta = sample.metadata
        expected = reference_pocket(relative, meta["ligand_instance"], meta["ligand_ccd_id"], cutoff)
        assert sorted(meta["pocket_residue_ids"]) == expected, sample.source_id
        assert meta["pocket_cutoff"] == cutoff


def test_smaller_cutoff_gives_a_sub_pocket() -> None:
    for relative in ENTRIES:
        wide = {s.source_id: set(s.metadata["pocket_residue_ids"]) for s in complexes(relative, 6.0)}
        for sample in complexes(relative, 4.0):
            assert set(sample.metadata["pocket_residue_ids"]) < wide[sample.source_id]


def poly_seq_scheme(path: Path) -> dict[str, tuple[int, str]]:
    """Author residue id ('A:52A') -> (1-based sequence position, residue name)."""
    block = gemmi.cif.read(str(path)).sole_block()
    table = block.find("_pdbx_poly_seq_scheme.", ["pdb_strand_id", "pdb_seq_num", "pdb_ins_code", "seq_id", "mon_id"])
    scheme = {}
    for row in table:
        icode = "" if row.str(2) in ("", ".", "?") else row.str(2)
        scheme[f"{row.str(0)}:{row.str(1)}{icode}"] = (int(row.str(3)), row.str(4))
    return scheme


@pytest.mark.parametrize("relative", [e for e in ENTRIES if e.endswith(".cif")])
def test_pocket_positions_in_the_text_are_sequence_positions(relative: str) -> None:
    scheme = poly_seq_scheme(DATA / relative)
    for sample in complexes(relative, 6.0):
        complex_ = FORMATS[sample.task].parse(sample.text)
        ids = sample.metadata["pocket_residue_ids"]
        assert len(ids) == len(complex_.pocket.residues)
        chains = sample.metadata["chain_ids"]
        for residue_id, (chain_index, position) in zip(ids, complex_.pocket.residues, strict=True):
            seq_id, name = scheme[residue_id]
            assert residue_id.split(":")[0] == chains[chain_index]
            assert position == seq_id - 1
            assert complex_.protein.chains[chain_index].sequence[position] == THREE_TO_ONE.get(name, "X")


def test_legacy_pdb_and_mmcif_give_the_same_pocket_texts() -> None:
    cif, legacy = complexes("mmcif/3o5r.cif", 6.0), complexes("legacy_pdb/3o5r.pdb", 6.0)
    assert [s.text for s in cif] == [s.text for s in legacy]
    assert [s.dedup_key for s in cif] == [s.dedup_key for s in legacy]


@pytest.mark.parametrize("relative", ["mmcif/3o5r.cif", "mmcif/4i39.cif", "mmcif/1k6p.cif", "legacy_pdb/3o5r.pdb"])
def test_kept_atoms_are_the_highest_occupancy_conformers(relative: str) -> None:
    """The atoms pockets are searched in: exactly biotite's heavy atoms after its altloc filter."""
    path = DATA / relative
    entry = load_entry(path.read_text(), path.stem)
    reference = biotite_atoms(relative)
    assert len(entry.atom_positions) == len(reference)
    assert np.allclose(np.sort(entry.atom_positions, axis=0), np.sort(reference.coord, axis=0), atol=1e-3)
    assert len(reference) < len(biotite_atoms_all_altlocs(relative)), "these entries have alternate locations"


def biotite_atoms_all_altlocs(relative: str) -> struc.AtomArray:
    path = DATA / relative
    if path.suffix == ".cif":
        atoms = pdbx.get_structure(pdbx.CIFFile.read(str(path)), model=1, altloc="all")
    else:
        atoms = pdb.PDBFile.read(str(path)).get_structure(model=1, altloc="all")
    return atoms[(atoms.element != "H") & ~struc.filter_solvent(atoms)]


def test_symmetric_copies_share_one_pocket() -> None:
    """4OZ7's two Cu(I) ions: biotite finds the same residue numbers around each, on its own chain; the
    source writes one pocket for both."""
    relative = "legacy_pdb/4oz7.pdb"
    first, second = (reference_pocket(relative, f"{c}:101", "CU1", 6.0) for c in "AB")
    assert {r.split(":")[0] for r in first} == {"A"} and {r.split(":")[0] for r in second} == {"B"}
    assert [r.split(":")[1] for r in first] == [r.split(":")[1] for r in second]
    config = PdbConfig(min_ligand_heavy_atoms=1, excluded_components=DEFAULT_EXCLUDED - {"CU1"})
    source = PdbSource(config)
    [item] = source.read(str(DATA / relative))
    [pocket] = [s for s in source.convert(item).samples if s.task == "pocket"]
    assert sorted(pocket.metadata["pocket_residue_ids"]) == first
    assert pocket.metadata["copies"] == ["A:101", "B:101"]
