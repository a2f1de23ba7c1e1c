"""Every grammar string the fixtures produce, for tokenizer-wide checks."""

from __future__ import annotations

from functools import lru_cache

from rdkit import Chem

from grammar.complex import Complex, ComplexForm, write_complex
from grammar.molecule import Molecule, write_molecule
from grammar.pocket import write_pocket, write_search, write_trans
from grammar.protein import Chain, Protein, write_protein
from grammar.reaction import Reaction, ReagentPolicy, write_reaction, write_reverse_reaction
from tests.grammar.real_data import DATA, protein_chains, raw_reactions, raw_smiles


@lru_cache(maxsize=1)
def grammar_corpus() -> tuple[str, ...]:
    from tests.grammar.test_antibody import antibody_texts
    from tests.grammar.test_pocket_and_complex import ENTRIES, _sites

    texts = [write_molecule(Molecule.from_smiles(s)) for s in raw_smiles() if Chem.MolFromSmiles(s) is not None]
    for raw in raw_reactions():
        try:
            reaction = Reaction.from_reaction_smiles(raw, reagents=ReagentPolicy.KEEP)
        except ValueError:
            continue
        texts += [write_reaction(reaction), write_reverse_reaction(reaction)]
    for path in sorted((DATA / "pdb/mmcif").glob("*.cif")):
        chains = protein_chains(path)
        if chains:
            texts.append(write_protein(Protein(tuple(Chain(seq) for _, seq, _ in chains))))
    ligand = Molecule.from_smiles("CC(=O)Nc1ccc(O)cc1")
    for name in ENTRIES:
        for site in _sites(name):
            texts += [write_pocket(site), write_pocket(site, expanded=True), write_search(site), write_trans(site)]
            texts += [write_complex(Complex(site.protein, ligand, site.pocket), f) for f in ComplexForm]
    texts += antibody_texts()
    return tuple(texts)
