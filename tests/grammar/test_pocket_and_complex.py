from __future__ import annotations

import pytest

from grammar.complex import Complex, ComplexForm, parse_complex, write_complex
from grammar.errors import InvalidResidue, InvalidSmiles, MalformedText
from grammar.molecule import Molecule
from grammar.pocket import (
    BindingSite,
    Pocket,
    parse_pocket,
    parse_search,
    parse_trans,
    write_pocket,
    write_search,
    write_trans,
)
from grammar.protein import Chain, Protein, residue_smiles_table
from grammar.tokenizer import default_tokenizer
from tests.grammar.real_data import DATA, ligand_pockets, protein_chains

# Real complexes: FKBP51 + FK506, HIV protease + inhibitor, DHODH + inhibitor/FMN/orotate.
ENTRIES = ["3o5r.cif", "1k6p.cif", "5h73.cif", "4i39.cif"]
LIGAND = Molecule.from_smiles("CC(=O)Nc1ccc(O)cc1")  # grammar tests only need some valid ligand


def _sites(name: str) -> list[BindingSite]:
    chains = {chain: (seq, ids) for chain, seq, ids in protein_chains(DATA / "pdb/mmcif" / name)}
    sites = []
    for _, contacts in ligand_pockets(DATA / "pdb/mmcif" / name):
        names = sorted(contacts)
        protein = Protein(tuple(Chain(chains[c][0], c, tuple(chains[c][1])) for c in names))
        residues = tuple((k, i) for k, c in enumerate(names) for i in sorted(contacts[c]))
        sites.append(BindingSite(protein, Pocket(residues, cutoff=6.0)))
    return sites


@pytest.mark.parametrize("name", ENTRIES)
def test_real_pockets_round_trip_in_every_format(name):
    sites = _sites(name)
    assert sites, f"{name} should have at least one ligand with a pocket"
    tokenizer = default_tokenizer()
    for site in sites:
        annotated, expanded = write_pocket(site), write_pocket(site, expanded=True)
        assert parse_pocket(annotated, expanded=False) == site
        assert parse_pocket(expanded, expanded=True) == site
        assert parse_search(write_search(site)) == site
        assert parse_trans(write_trans(site)) == site
        assert annotated.count("<PocketS>") == len(site.pocket.residues)
        for form in ComplexForm:
            complex_ = Complex(site.protein, LIGAND, site.pocket)
            text = write_complex(complex_, form)
            assert parse_complex(text) == (complex_.view(form), form)
            assert tokenizer.decode(tokenizer.encode(text)) == text
        for text in (annotated, expanded, write_search(site), write_trans(site)):
            assert tokenizer.decode(tokenizer.encode(text)) == text


def test_pocket_annotation_layout():
    site = BindingSite(Protein.from_sequences("MKLV"), Pocket(((0, 1), (0, 2))))
    assert write_pocket(site) == "<ProteinS>M<PocketS>K<PocketE><PocketS>L<PocketE>V<ProteinE>"
    lys, leu = residue_smiles_table()["K"], residue_smiles_table()["L"]
    assert write_pocket(site, expanded=True) == f"<ProteinS>M<PocketS>{lys}<PocketE><PocketS>{leu}<PocketE>V<ProteinE>"
    assert write_search(site) == "<ProteinS>MKLV<ProteinE><Search>" + write_pocket(site)
    assert write_trans(site) == write_pocket(site) + "<Trans>" + write_pocket(site, expanded=True)


def test_residue_ids_and_cutoff_are_recorded_but_not_content():
    a = Pocket(((0, 1),), cutoff=6.0, residue_ids=("A:52A",))
    assert a == Pocket(((0, 1),), cutoff=4.0) and a.cutoff == 6.0 and a.residue_ids == ("A:52A",)


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("<ProteinS>M<PocketS>K<ProteinE>", MalformedText, "unexpected <ProteinE>"),
        ("<ProteinS>M<PocketS>CCO<PocketE><ProteinE>", InvalidResidue, "not an amino-acid residue"),
        ("<ProteinS>M<PocketS>C(C)(C)(C)(C)C<PocketE><ProteinE>", InvalidSmiles, "valence"),
        ("<ProteinS>MKV<ProteinE>", MalformedText, "no pocket residues"),
    ],
)
def test_malformed_pocket_text(text, error, match):
    with pytest.raises(error, match=match):
        parse_pocket(text)


def test_search_and_trans_must_agree_on_both_sides():
    with pytest.raises(MalformedText, match="sequences before and after <Search> differ"):
        parse_search("<ProteinS>MKV<ProteinE><Search><ProteinS>M<PocketS>K<PocketE>L<ProteinE>")
    site = BindingSite(Protein.from_sequences("MKV"), Pocket(((0, 1),)))
    shifted = BindingSite(Protein.from_sequences("MKV"), Pocket(((0, 2),)))
    with pytest.raises(MalformedText, match="pockets before and after <Trans> differ"):
        parse_trans(write_pocket(site) + "<Trans>" + write_pocket(shifted, expanded=True))


def test_complex_form_without_pocket_is_refused():
    with pytest.raises(MalformedText, match="needs a pocket"):
        write_complex(Complex(Protein.from_sequences("MKV"), LIGAND), ComplexForm.RESIDUE_SURFACE_SMILES)


def test_pocket_beyond_chain_is_refused():
    with pytest.raises(InvalidResidue, match="beyond chain"):
        BindingSite(Protein.from_sequences("MKV"), Pocket(((0, 3),)))
