"""Raw values read straight from the real fixture files with the field's libraries (independent of the
pipeline's readers), for the grammar tests."""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import gemmi
from rdkit import Chem

DATA = Path(__file__).parents[1] / "data"


@lru_cache(maxsize=1)
def raw_smiles() -> list[str]:
    """Every SMILES in the ChEMBL fixtures: chemreps, the EGFR activity export and the SDF."""
    smiles = []
    with open(DATA / "chembl/chembl_30_chemreps_100.txt") as handle:
        smiles += [row["canonical_smiles"] for row in csv.DictReader(handle, delimiter="\t")]
    with open(DATA / "chembl/EGFR_compounds_teachopencadd.csv") as handle:
        smiles += [row["smiles"] for row in csv.DictReader(handle)]
    supplier = Chem.SDMolSupplier(str(DATA / "chembl/CHEMBL26_3301362_AZ_bpka.sdf"))
    smiles += [Chem.MolToSmiles(mol) for mol in supplier if mol is not None]
    return smiles


@lru_cache(maxsize=1)
def raw_reactions() -> list[str]:
    """Atom-mapped reaction SMILES from USPTO-50k, USPTO-MIT and Lowe's grants."""
    reactions = []
    with open(DATA / "uspto/USPTO_50K_sample.csv") as handle:
        reactions += [row["reactants>reagents>production"] for row in csv.DictReader(handle)]
    with open(DATA / "uspto/USPTO_MIT_test_human.txt") as handle:
        reactions += [line.split()[0] for line in handle if line.strip()]
    with open(DATA / "uspto/lowe_grants_sample_small.rsmi") as handle:
        reactions += [line.split("\t")[0] for line in handle if line.strip()]
    return reactions


def protein_chains(path: Path) -> list[tuple[str, str, list[str]]]:
    """(chain name, one-letter sequence, residue ids) of each protein chain's modelled residues."""
    structure = gemmi.read_structure(str(path))
    structure.setup_entities()
    structure.remove_alternative_conformations()
    chains = []
    for chain in structure[0]:
        polymer = chain.get_polymer()
        if polymer.length() == 0 or polymer.check_polymer_type() not in (
            gemmi.PolymerType.PeptideL, gemmi.PolymerType.PeptideD,
        ):
            continue
        sequence = "".join(gemmi.find_tabulated_residue(r.name).one_letter_code.upper() for r in polymer)
        sequence = sequence.replace(" ", "X")
        ids = [f"{chain.name}:{r.seqid.num}{r.seqid.icode.strip()}" for r in polymer]
        chains.append((chain.name, sequence, ids))
    return chains


def structure_files() -> list[Path]:
    return [*sorted((DATA / "pdb/mmcif").glob("*.cif")), DATA / "pdb/mmcif/1pfe.cif.gz"]


def ligand_pockets(path: Path, cutoff: float = 6.0) -> list[tuple[str, dict[str, set[int]]]]:
    """(ligand residue name, {protein chain: residue indices}) for each non-water ligand residue.

    A plain all-pairs distance check with numpy, so it is independent of the pipeline's neighbour search.
    """
    import numpy as np

    structure = gemmi.read_structure(str(path))
    structure.setup_entities()
    structure.remove_alternative_conformations()
    structure.remove_hydrogens()
    model = structure[0]
    proteins = {name: seq_ids for name, _, seq_ids in protein_chains(path)}
    residue_atoms = []  # (chain, index in polymer, coords)
    for chain in model:
        if chain.name not in proteins:
            continue
        for index, residue in enumerate(chain.get_polymer()):
            residue_atoms.append((chain.name, index, np.array([a.pos.tolist() for a in residue])))
    pockets = []
    for chain in model:
        for residue in chain.get_ligands():
            if residue.is_water():
                continue
            ligand = np.array([a.pos.tolist() for a in residue])
            contacts: dict[str, set[int]] = {}
            for chain_name, index, coords in residue_atoms:
                distances = np.linalg.norm(coords[:, None, :] - ligand[None, :, :], axis=-1)
                if (distances <= cutoff).any():
                    contacts.setdefault(chain_name, set()).add(index)
            if contacts:
                pockets.append((residue.name, contacts))
    return pockets
