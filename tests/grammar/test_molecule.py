from __future__ import annotations

import csv

import pytest
from rdkit import Chem

from grammar.errors import InvalidSmiles, MalformedText, UnknownToken
from grammar.molecule import Molecule, parse_molecule, smiles_tokens, write_molecule
from grammar.tokenizer import default_tokenizer
from tests.grammar.real_data import DATA, raw_smiles


def test_decoded_molecules_have_chembls_published_inchikeys():
    """ChEMBL's own table (chemreps: canonical_smiles, standard_inchi_key): the molecule decoded from the grammar
    text has the InChIKey ChEMBL published for it (InChI, the IUPAC algorithm, not RDKit's canonical SMILES)."""
    with open(DATA / "chembl/chembl_30_chemreps_100.txt") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert len(rows) == 100
    for row in rows:
        decoded = parse_molecule(write_molecule(Molecule.from_smiles(row["canonical_smiles"])))
        assert Chem.MolToInchiKey(Chem.MolFromSmiles(decoded.smiles)) == row["standard_inchi_key"], row["chembl_id"]


def test_every_rdkit_valid_fixture_molecule_round_trips_to_the_same_molecule():
    """Same molecule judged by standard InChI (an independent canonical form) of the input and of the decoded
    SMILES; the text itself is stable (write(parse(text)) == text) and tokenizes losslessly."""
    tokenizer = default_tokenizer()
    valid = [s for s in raw_smiles() if Chem.MolFromSmiles(s) is not None]
    assert len(valid) > 5000
    texts = []
    for smiles in valid:
        text = write_molecule(Molecule.from_smiles(smiles))
        decoded = parse_molecule(text)
        source_inchi = Chem.MolToInchi(Chem.MolFromSmiles(smiles))
        assert Chem.MolToInchi(Chem.MolFromSmiles(decoded.smiles)) == source_inchi, smiles
        assert write_molecule(decoded) == text
        texts.append(text)
    ids = tokenizer.encode_batch(texts)
    assert tokenizer.decode_batch(ids) == texts


def test_bracket_atoms_ring_closures_and_halogens_are_single_tokens():
    tokenizer = default_tokenizer()
    # The tokenizer does not canonicalize, so this text keeps its %nn closures and its chirality.
    text = "<MoleculeS>C[C@@H]1CC2(CCCC1)CCC3C%10CC%11CC3C2C%10C%11Br.[Na+].[Cl-]<MoleculeE>"
    pieces = [tokenizer.vocab.tokens[i] for i in tokenizer.encode(text)]
    assert "[C@@H]" in pieces and "[Na+]" in pieces and "[Cl-]" in pieces and "Br" in pieces
    assert "%10" in pieces and "%11" in pieces
    assert "".join(pieces) == text


def test_element_symbols_are_shared_tokens():
    tokens = set(smiles_tokens())
    assert {"[Fe]", "[O]", "[Li]", "[Cu+2]", "[13CH3]", "[2H]", "[nH]", "[se]"} <= tokens


@pytest.mark.parametrize(
    ("smiles", "reason"),
    [
        ("C(C)(C)(C)(C)C", "Explicit valence"),  # pentavalent carbon
        ("c1ccccc", "unparsable"),  # unclosed aromatic ring
        ("C1CC", "unparsable"),  # unclosed ring
        ("", "empty SMILES"),
    ],
)
def test_invalid_smiles_get_rdkit_reasons(smiles, reason):
    with pytest.raises(InvalidSmiles, match=reason):
        Molecule.from_smiles(smiles)


def test_invalid_smiles_inside_text_points_at_the_molecule():
    with pytest.raises(InvalidSmiles) as raised:
        parse_molecule("<MoleculeS>CC(C)(C)(C)(C)C<MoleculeE>")
    assert raised.value.position == len("<MoleculeS>")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("<MoleculeS>CCO", MalformedText),
        ("CCO<MoleculeE>", MalformedText),
        ("<MoleculeS>CC<ProteinS>O<MoleculeE>", MalformedText),
        ("<MoleculeS>CC O<MoleculeE>", UnknownToken),
        ("<MoleculeS>CCO<MoleculeE><MoleculeS>C<MoleculeE>", MalformedText),
    ],
)
def test_malformed_molecule_text(text, error):
    with pytest.raises(error, match="at char"):
        parse_molecule(text)


def test_atom_map_classes_are_unknown_tokens_not_silent_splits():
    with pytest.raises(UnknownToken, match=r"\[CH3:1\]"):
        default_tokenizer().encode("<MoleculeS>[CH3:1]O<MoleculeE>")
