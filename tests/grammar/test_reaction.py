from __future__ import annotations

import pytest
from rdkit import Chem

from grammar.errors import InvalidSmiles, MalformedText
from grammar.reaction import (
    Reaction,
    ReagentPolicy,
    parse_reaction,
    parse_reverse_reaction,
    write_reaction,
    write_reverse_reaction,
)
from grammar.tokenizer import default_tokenizer
from tests.grammar.real_data import raw_reactions


def _independent_canonical(smiles_part: str) -> list[str]:
    """Canonical SMILES of each molecule read from its unmapped SMILES, computed with RDKit directly."""
    out = []
    for smiles in filter(None, smiles_part.split(".")):
        mol = Chem.MolFromSmiles(smiles)
        for atom in mol.GetAtoms():
            atom.SetAtomMapNum(0)
        out.append(Chem.MolToSmiles(Chem.MolFromSmiles(Chem.MolToSmiles(mol))))
    return sorted(out)


def _rdkit_valid(reaction: str) -> bool:
    return all(Chem.MolFromSmiles(s) is not None for part in reaction.split(">") for s in part.split(".") if s)


def test_every_rdkit_valid_fixture_reaction_round_trips_unmapped_and_canonical():
    tokenizer = default_tokenizer()
    valid = [r for r in raw_reactions() if _rdkit_valid(r)]
    assert len(valid) > 2500
    texts = []
    for raw in valid:
        reactants, reagents, products = raw.split()[0].split(">")
        reaction = Reaction.from_reaction_smiles(raw, reagents=ReagentPolicy.KEEP)
        assert [m.smiles for m in reaction.reactants] == _independent_canonical(reactants)
        assert [m.smiles for m in reaction.reagents] == _independent_canonical(reagents)
        assert [m.smiles for m in reaction.products] == _independent_canonical(products)
        forward, reverse = write_reaction(reaction), write_reverse_reaction(reaction)
        for molecule in reaction.reactants + reaction.reagents + reaction.products:
            assert all(a.GetAtomMapNum() == 0 for a in Chem.MolFromSmiles(molecule.smiles).GetAtoms())
        assert parse_reaction(forward) == reaction
        assert parse_reverse_reaction(reverse) == reaction
        texts += [forward, reverse]
    assert tokenizer.decode_batch(tokenizer.encode_batch(texts)) == texts


def test_reagent_policies(data_dir):
    raw = "[CH3:1][OH:2].[Na+].[OH-]>O>[CH3:1][O:2]C"
    assert Reaction.from_reaction_smiles(raw).reagents == ()
    keep = Reaction.from_reaction_smiles(raw, reagents=ReagentPolicy.KEEP)
    assert [m.smiles for m in keep.reagents] == ["O"]
    assert "<ReagentS><MoleculeS>O<MoleculeE><ReagentE><React>" in write_reaction(keep)
    merge = Reaction.from_reaction_smiles(raw, reagents=ReagentPolicy.MERGE)
    assert [m.smiles for m in merge.reactants] == ["CO", "O", "[Na+]", "[OH-]"]
    # LOGOS's answer layout: after <ReverseReact> only reactants, also when reagents are kept (as context).
    assert write_reverse_reaction(keep) == (
        "<MoleculeS>COC<MoleculeE><ReagentS><MoleculeS>O<MoleculeE><ReagentE><ReverseReact>"
        "<MoleculeS>CO<MoleculeE><MoleculeS>[Na+]<MoleculeE><MoleculeS>[OH-]<MoleculeE>"
    )
    assert "<Reagent" not in write_reverse_reaction(Reaction.from_reaction_smiles(raw))


def test_reaction_text_layout():
    reaction = Reaction.from_reaction_smiles("CC(=O)O.OCC>>CC(=O)OCC")
    assert write_reaction(reaction) == (
        "<MoleculeS>CC(=O)O<MoleculeE><MoleculeS>CCO<MoleculeE><React><MoleculeS>CCOC(C)=O<MoleculeE>"
    )
    assert write_reverse_reaction(reaction) == (
        "<MoleculeS>CCOC(C)=O<MoleculeE><ReverseReact><MoleculeS>CC(=O)O<MoleculeE><MoleculeS>CCO<MoleculeE>"
    )


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        ("CC(C)(C)(C)(C)C>>CC", InvalidSmiles, "Explicit valence"),
        ("CCO>CC", InvalidSmiles, "reactants>reagents>products"),
        (">>CC", MalformedText, "at least one reactant"),
    ],
)
def test_bad_reactions(raw, error, match):
    with pytest.raises(error, match=match):
        Reaction.from_reaction_smiles(raw)


@pytest.mark.parametrize(
    "text",
    [
        "<MoleculeS>CCO<MoleculeE><MoleculeS>C<MoleculeE>",  # no <React>
        "<MoleculeS>CCO<MoleculeE><React>",  # no product
        "<MoleculeS>CCO<MoleculeE><ReverseReact><MoleculeS>C<MoleculeE>",  # wrong direction for parse_reaction
    ],
)
def test_malformed_reaction_text(text):
    with pytest.raises(MalformedText, match="at char"):
        parse_reaction(text)
