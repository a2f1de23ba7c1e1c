from __future__ import annotations

import pytest
from rdkit import Chem
from rdkit.Chem.MolStandardize import rdMolStandardize

from grammar.errors import InvalidResidue, MalformedText, UnknownToken
from grammar.protein import Chain, Protein, parse_protein, residue_smiles_table, write_protein
from grammar.tokenizer import default_tokenizer
from tests.grammar.real_data import protein_chains, structure_files


@pytest.mark.parametrize("path", structure_files(), ids=lambda p: p.name)
def test_real_protein_sequences_round_trip_exactly(path):
    chains = protein_chains(path)
    if not chains:
        pytest.skip(f"{path.name} has no protein chain")
    protein = Protein(tuple(Chain(seq, name, tuple(ids)) for name, seq, ids in chains))
    text = write_protein(protein)
    assert parse_protein(text) == protein
    assert [c.sequence for c in parse_protein(text).chains] == [seq for _, seq, _ in chains]
    tokenizer = default_tokenizer()
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert len(ids) == sum(len(seq) + 2 for _, seq, _ in chains)  # one token per residue plus the two tags


def test_residue_ids_are_provenance_not_content():
    assert Chain("MKV", "A", ("A:1", "A:2", "A:3")) == Chain("MKV", "B", ("B:-1", "B:0", "B:0A"))


def test_residue_smiles_match_the_ccd(data_dir):
    """SEC/PYL are written by hand (RDKit lacks them): check them, and the 20 others, against biotite's CCD."""
    import biotite.interface.rdkit as rdkit_interface
    import biotite.structure.info as info

    names = {"A": "ALA", "C": "CYS", "D": "ASP", "E": "GLU", "F": "PHE", "G": "GLY", "H": "HIS", "I": "ILE",
             "K": "LYS", "L": "LEU", "M": "MET", "N": "ASN", "P": "PRO", "Q": "GLN", "R": "ARG", "S": "SER",
             "T": "THR", "V": "VAL", "W": "TRP", "Y": "TYR", "U": "SEC", "O": "PYL"}
    for letter, ccd_id in names.items():
        mol = rdkit_interface.to_mol(info.residue(ccd_id))
        Chem.AssignStereochemistryFrom3D(mol)  # the CCD's ideal coordinates carry the chirality
        # The CCD models HIS protonated; residue SMILES are the neutral amino acids.
        expected = Chem.MolToSmiles(rdMolStandardize.Uncharger().uncharge(Chem.RemoveHs(mol)))
        assert residue_smiles_table()[letter] == expected, ccd_id


@pytest.mark.parametrize(
    ("text", "error", "position"),
    [
        ("<ProteinS>MKVB<ProteinE>", InvalidResidue, 13),  # B is not in the residue alphabet
        ("<ProteinS>MKV", MalformedText, 13),  # unterminated
        ("<ProteinS><ProteinE>", InvalidResidue, 20),  # empty chain
        ("<ProteinS>MK V<ProteinE>", UnknownToken, 12),
        ("<ProteinS>MKV<ProteinE>C", MalformedText, 23),  # trailing text
        ("<ProteinS>MKV<PocketS>A<PocketE><ProteinE>", MalformedText, 0),  # a plain protein has no pocket
    ],
)
def test_malformed_protein_text_names_the_position(text, error, position):
    with pytest.raises(error) as raised:
        parse_protein(text)
    assert raised.value.position == position
    assert f"at char {position}" in str(raised.value)


def test_invalid_residue_in_object_is_named():
    with pytest.raises(InvalidResidue, match="residue 2 is 'J'"):
        Chain("MKJ", "A")
