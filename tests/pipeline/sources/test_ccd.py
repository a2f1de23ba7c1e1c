"""Ligand SMILES from the Chemical Component Dictionary, checked against the CCD's own descriptors.

References are independent of the code under test: the InChI/InChIKey that wwPDB ships in the verbatim
CCD files (``_pdbx_chem_comp_descriptor``), and the ``_chem_comp.formula`` of each component.
"""

from __future__ import annotations

import gzip
import pickle
import re
from pathlib import Path

import gemmi
import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import rdMolDescriptors, rdMolHash

from pipeline.sources.ccd import (
    CCD_BUNDLED,
    CCD_USER,
    CONNECTIVITY_ONLY,
    PERCEIVED,
    ComponentDictionary,
    ComponentError,
    finish_smiles,
    perceive_smiles,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "pdb"
VERBATIM = sorted((DATA / "ccd" / "verbatim").glob("*.cif"))
SUBSET = DATA / "ccd" / "components_subset_converted_from_biotite_bcif.cif"


def descriptors(path: Path) -> dict[str, str]:
    block = gemmi.cif.read(str(path)).sole_block()
    table = block.find("_pdbx_chem_comp_descriptor.", ["type", "descriptor"])
    return {row.str(0): row.str(1) for row in table}


def formula(block: gemmi.cif.Block) -> str:
    """``_chem_comp.formula`` ('C44 H69 N O12', charges as a trailing '1-'/'2+' part) without charge."""
    parts = gemmi.cif.as_string(block.find_value("_chem_comp.formula")).split()
    return "".join(p for p in parts if p[0].isalpha())


def smiles_formula(smiles: str) -> str:
    """Hill formula of the neutral-charge-stripped SMILES, written like the CCD's (no charge)."""
    return re.sub(r"[+-]\d*$", "", rdMolDescriptors.CalcMolFormula(Chem.MolFromSmiles(smiles)))


def without_stereo_layers(inchi: str) -> str:
    return "/".join(layer for layer in inchi.split("/") if not layer.startswith(("b", "t", "m", "s")))


@pytest.fixture(scope="module")
def bundled() -> ComponentDictionary:
    return ComponentDictionary()


@pytest.mark.parametrize("path", [p for p in VERBATIM if p.stem != "UNL"], ids=lambda p: p.stem)
@pytest.mark.parametrize("dictionary", ["bundled", "user"])
def test_smiles_match_the_ccd_inchi(path: Path, dictionary: str, bundled: ComponentDictionary) -> None:
    """Bundled CCD and the verbatim file as a user dictionary both give the wwPDB InChI."""
    ccd = bundled if dictionary == "bundled" else ComponentDictionary(str(path), use_bundled=False)
    found = ccd.lookup(path.stem)
    assert found is not None
    assert found.source == (CCD_BUNDLED if dictionary == "bundled" else CCD_USER)
    reference = descriptors(path)
    mol = Chem.MolFromSmiles(found.smiles)
    assert without_stereo_layers(Chem.MolToInchi(mol)) == without_stereo_layers(reference["InChI"])
    key = Chem.MolToInchiKey(mol)
    if "/b" in reference["InChI"] and path.stem == "HEM":
        # The porphyrin's methine double-bond geometry (/b layer) lives in aromatic rings that SMILES
        # cannot mark, so the key's stereo block differs; its skeleton block (connectivity) must not.
        assert key.split("-")[0] == reference["InChIKey"].split("-")[0]
        assert key != reference["InChIKey"]  # were they equal, this branch would be unnecessary
    else:
        assert key == reference["InChIKey"]


def test_unl_has_no_atoms_so_no_smiles(bundled: ComponentDictionary) -> None:
    assert ComponentDictionary(str(DATA / "ccd" / "verbatim" / "UNL.cif"), use_bundled=False).lookup("UNL") is None
    assert bundled.lookup("UNL") is None
    assert bundled.lookup("ZZZZZ") is None


def subset_blocks() -> list[gemmi.cif.Block]:
    return list(gemmi.cif.read(str(SUBSET)))


@pytest.mark.parametrize("block", subset_blocks(), ids=lambda b: b.name)
def test_user_components_file_matches_bundled_and_formula(block: gemmi.cif.Block, bundled) -> None:
    """The same CCD data read two ways (text mmCIF vs biotite's BinaryCIF) gives the same SMILES, and the
    SMILES has the component's ``_chem_comp.formula``."""
    user = ComponentDictionary(str(SUBSET), use_bundled=False).lookup(block.name)
    assert user is not None and user.source == CCD_USER
    assert user.smiles == bundled.lookup(block.name).smiles
    assert smiles_formula(user.smiles) == formula(block)
    n_heavy = sum(1 for e in block.find_values("_chem_comp_atom.type_symbol") if e not in ("H", "D"))
    assert user.heavy_atoms == n_heavy


def test_gzipped_user_file_and_precedence(tmp_path: Path, bundled: ComponentDictionary) -> None:
    gz = tmp_path / "components.cif.gz"
    gz.write_bytes(gzip.compress(SUBSET.read_bytes()))
    ccd = ComponentDictionary(str(gz))
    assert ccd.lookup("FK5").source == CCD_USER  # the user file wins where it knows the id
    assert ccd.lookup("ATP").source == CCD_BUNDLED  # and biotite's CCD fills in the rest
    assert ccd.lookup("ATP").smiles == bundled.lookup("ATP").smiles


def test_dictionary_pickles_without_its_cache(bundled: ComponentDictionary) -> None:
    bundled.lookup("GOL")
    copy = pickle.loads(pickle.dumps(bundled))
    assert copy._cache == {} and copy.lookup("GOL") == bundled.lookup("GOL")


def ligand_atoms(entry: str, name: str) -> tuple[list[str], np.ndarray]:
    structure = gemmi.read_structure(str(DATA / "mmcif" / entry))
    residue = next(r for chain in structure[0] for r in chain if r.name == name)
    atoms = [a for a in residue if a.altloc in ("\0", "A")]
    return [a.element.name for a in atoms], np.array([a.pos.tolist() for a in atoms])


def test_bond_orders_perceived_when_hydrogens_are_modelled(bundled: ComponentDictionary) -> None:
    """7GSA models A1AA6 with hydrogens: xyz2mol recovers the CCD molecule, stereo included."""
    elements, positions = ligand_atoms("7gsa.cif", "A1AA6")
    assert "H" in elements
    found = perceive_smiles("A1AA6", elements, positions, 0, allow_connectivity_only=False)
    assert found.source == PERCEIVED
    assert Chem.MolToInchiKey(Chem.MolFromSmiles(found.smiles)) == Chem.MolToInchiKey(
        Chem.MolFromSmiles(bundled.lookup("A1AA6").smiles)
    )


def test_heavy_atoms_only_give_connectivity_or_a_reject(bundled: ComponentDictionary) -> None:
    """FK506 in 3O5R has no hydrogens: no bond orders unless a single-bonded stand-in is allowed, whose
    element graph (connectivity, no bond orders) is the CCD's."""
    elements, positions = ligand_atoms("3o5r.cif", "FK5")
    assert "H" not in elements
    with pytest.raises(ComponentError) as error:
        perceive_smiles("FK5", elements, positions, 0, allow_connectivity_only=False)
    assert error.value.reason_code == "no_bond_orders"
    found = perceive_smiles("FK5", elements, positions, 0, allow_connectivity_only=True)
    assert found.source == CONNECTIVITY_ONLY
    assert element_graph(found.smiles) == element_graph(bundled.lookup("FK5").smiles)


def element_graph(smiles: str) -> str:
    mol = Chem.MolFromSmiles(smiles)
    Chem.RemoveStereochemistry(mol)
    return rdMolHash.MolHash(mol, rdMolHash.HashFunction.ElementGraph)


def test_unknown_element_is_a_clear_error() -> None:
    with pytest.raises(ComponentError) as error:
        perceive_smiles("UNX", ["X", "C"], np.zeros((2, 3)), 0, allow_connectivity_only=True)
    assert error.value.reason_code == "unknown_element"


def test_smiles_outside_the_grammar_vocabulary_is_a_clear_error() -> None:
    """The vocabulary has charges up to ±4; uranyl's U(VI) is written [U+6] and cannot be tokenized."""
    with pytest.raises(ComponentError) as error:
        finish_smiles(Chem.MolFromSmiles("[U+6]"), "U6", stereo_from_3d=False)
    assert error.value.reason_code == "unknown_token" and "[U+6]" in str(error.value)
