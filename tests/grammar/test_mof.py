"""MOF text and the automatic node/linker decomposition, on the real MOF CIFs in tests/data/mp/mof."""

from __future__ import annotations

import warnings
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
from pymatgen.analysis.dimensionality import get_structure_components
from pymatgen.analysis.graphs import StructureGraph
from pymatgen.core import Composition, Structure
from rdkit import Chem

from grammar.errors import InvalidSmiles, MalformedText
from grammar.formats import FORMATS, detect_task
from grammar.material import MOF, parse_mof, write_mof
from grammar.material.mof_decomposition import MOFDecompositionError, bonds_of, decompose_mof, fragments_of
from grammar.tokenizer import default_tokenizer

MOF_DIR = Path(__file__).parents[1] / "data" / "mp" / "mof"
DECOMPOSABLE = ("ABAVIJ_clean.cif", "DALVIY_clean.cif", "ZIF-8-RASPA.cif", "qmof-fef756d.cif")

# Known building blocks, written by hand from the literature (not by the code under test).
HKUST_1 = (["[Cu+2].[Cu+2]"], ["O=C([O-])c1cc(C(=O)[O-])cc(C(=O)[O-])c1"])  # Cu paddlewheel, BTC
MOF_5 = (["[O-2].[Zn+2].[Zn+2].[Zn+2].[Zn+2]"], ["[O-]C(=O)c1ccc(cc1)C(=O)[O-]"])  # Zn4O, BDC
UIO_66 = (["[Zr+4].[Zr+4].[Zr+4].[Zr+4].[Zr+4].[Zr+4].[O-2].[O-2].[O-2].[O-2].[OH-].[OH-].[OH-].[OH-]"],
          ["[O-]C(=O)c1ccc(cc1)C(=O)[O-]"])


@cache
def cif(name: str) -> Structure:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_file(MOF_DIR / name)


def test_zif8_is_zinc_nodes_and_2_methylimidazolate():
    decomposition = decompose_mof(cif("ZIF-8-RASPA.cif"), "ZIF-8")
    assert decomposition.mof == MOF.from_smiles(["[Zn+2]"], ["Cc1[n-]ccn1"])
    assert decomposition.counts == {"[Zn+2]": 12, "Cc1ncc[n-]1": 24}  # Zn(mIm)2, 12 Zn in the cubic cell


@pytest.mark.parametrize("name", DECOMPOSABLE)
def test_decomposition_accounts_for_every_atom_and_balances_charge(name):
    structure = cif(name)
    decomposition = decompose_mof(structure, name)
    atoms: Counter[str] = Counter()
    charge = 0
    for smiles, count in decomposition.counts.items():
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        for atom in mol.GetAtoms():
            atoms[atom.GetSymbol()] += count
        charge += count * Chem.GetFormalCharge(mol)
    assert Composition(atoms) == structure.composition, decomposition.counts
    assert charge == 0
    text = write_mof(decomposition.mof)
    assert parse_mof(text) == decomposition.mof
    tokenizer = default_tokenizer()
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert detect_task(text) == "mof" and FORMATS["mof"].parse(text) == decomposition.mof


def test_unbalanced_cif_is_refused_with_the_reason():
    # RUDQUD_clean: 32 Ag against 8 pyrimidinylacetylides and 8 trifluoroacetates (-16): no single
    # oxidation state balances it (the 'clean' CoRE file lacks counter-ions), so no guessed answer.
    with pytest.raises(MOFDecompositionError, match=r"RUDQUD: ligand charge -16 .* 32 metal atoms of \['Ag'\]"):
        decompose_mof(cif("RUDQUD_clean.cif"), "RUDQUD")


@pytest.mark.parametrize("name", ["ZIF-8-RASPA.cif", "qmof-fef756d.cif"])
def test_fragments_agree_with_pymatgen_dimensionality(name):
    structure = cif(name)
    bonds = bonds_of(structure)
    organic = [i for i, site in enumerate(structure) if not site.specie.is_metal]
    ours = fragments_of(set(organic), bonds)
    position = {old: new for new, old in enumerate(organic)}
    edges = {(position[i], position[j], (0, 0, 0), image): None for i, j, image in bonds
             if i in position and j in position}
    graph = StructureGraph.from_edges(Structure.from_sites([structure[i] for i in organic]), edges)
    theirs = get_structure_components(graph, inc_site_ids=True)
    assert sorted(tuple(organic[k] for k in sorted(c["site_ids"])) for c in theirs) == sorted(f.atoms for f in ours)
    assert all(c["dimensionality"] == 0 for c in theirs) and not any(f.periodic for f in ours)


def test_a_periodic_network_is_detected():
    graphite = Structure.from_file(MOF_DIR.parent / "structures" / "Graphite.json")
    fragments = fragments_of(set(range(len(graphite))), bonds_of(graphite))
    assert fragments and all(f.periodic for f in fragments)  # graphene sheets: no finite molecule


@pytest.mark.parametrize("blocks", [HKUST_1, MOF_5, UIO_66])
def test_known_mofs_round_trip_in_canonical_order(blocks):
    nodes, linkers = blocks
    mof = MOF.from_smiles(nodes, linkers)
    text = write_mof(mof)
    assert text.startswith("<MaterialS><MetalS>") and text.endswith("<MoleculeE><MaterialE>")
    assert parse_mof(text) == mof
    tokenizer = default_tokenizer()
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert mof.linkers[0].smiles == Chem.MolToSmiles(Chem.MolFromSmiles(linkers[0]))


def test_mof_blocks_are_sorted_and_deduplicated_on_construction():
    mof = MOF.from_smiles(["[Zn+2]", "[Cu+2]", "[Zn+2]"], ["Cc1ncc[n-]1", "Cc1[n-]ccn1"])
    assert mof.nodes == ("[Cu+2]", "[Zn+2]") and len(mof.linkers) == 1
    with pytest.raises(MalformedText, match="sorted canonical SMILES"):
        MOF(("[Zn+2]", "[Cu+2]"), mof.linkers)


ZIF8 = "<MaterialS><MetalS>[Zn+2]<MetalE><MoleculeS>Cc1ncc[n-]1<MoleculeE><MaterialE>"


@pytest.mark.parametrize(
    ("text", "error", "reason", "position"),
    [
        (ZIF8.replace("<MaterialE>", ""), MalformedText, "expected <MaterialE>", len(ZIF8) - 11),
        (ZIF8.replace("[Zn+2]", "C"), InvalidSmiles, "has no metal atom", 19),
        (ZIF8.replace("[Zn+2]", "[Zn+2]("), InvalidSmiles, "unparsable SMILES", 19),
        (ZIF8.replace("<MoleculeE>", "<MoleculeE><MoleculeS>Cc1[n-]ccn1<MoleculeE>"), MalformedText,
         "linker 'Cc1ncc[n-]1' appears twice", 66),
        ("<MaterialS><MoleculeS>Cc1ncc[n-]1<MoleculeE><MaterialE>", MalformedText, "starts with a <MetalS>", 11),
        (ZIF8.replace("<MaterialE>", "<MetalS>[Cu+2]<MetalE><MaterialE>"), MalformedText,
         "node blocks come before all linker blocks", 66),
        (ZIF8.replace("<MoleculeS>Cc1ncc[n-]1<MoleculeE>", ""), MalformedText, "at least one <MoleculeS> linker", 33),
    ],
)
def test_malformed_mof_text_names_position_and_reason(text, error, reason, position):
    with pytest.raises(error) as caught:
        parse_mof(text)
    assert reason in caught.value.reason
    assert caught.value.position == position
