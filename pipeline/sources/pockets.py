"""Binding pockets, and the samples of one entry: proteins, and pockets/complexes per ligand.

A pocket is the protein residues with any heavy atom within a cutoff of any ligand heavy atom.

The definition is PLINDER's (6 Å heavy atom to heavy atom by default), on the asymmetric unit of the
first model as deposited: no symmetry mates, no biological assembly. One KD-tree (scipy) over the
protein heavy atoms of an entry serves all its ligands.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from grammar.complex import Complex
from grammar.formats import FORMATS
from grammar.molecule import Molecule, inchikey
from grammar.pocket import BindingSite, Pocket
from grammar.protein import Chain, Protein
from pipeline.records import Sample, dedup_key
from pipeline.sources.base import metadata_without_nones
from pipeline.sources.ccd import ComponentSmiles
from pipeline.sources.pdb_structure import Entry, Ligand


class PocketSearch:
    """Neighbour search from ligand atoms to the heavy atoms of the chosen protein chains."""

    def __init__(self, entry: Entry, chain_indices: Sequence[int]) -> None:
        self.entry = entry
        atom_chain = entry.residue_chain[entry.atom_residue]
        self.protein_atoms = np.flatnonzero(np.isin(atom_chain, np.asarray(chain_indices, dtype=np.int64)))
        self.tree = cKDTree(entry.atom_positions[self.protein_atoms]) if len(self.protein_atoms) else None

    def residues_near(self, ligand_rows: Sequence[int], cutoff: float) -> np.ndarray:
        """Residue rows (sorted by chain, then sequence position) within ``cutoff`` Å of the ligand's residues."""
        ligand_atoms = np.concatenate([self.entry.atom_rows(row) for row in ligand_rows])
        if self.tree is None or not len(ligand_atoms):
            return np.zeros(0, dtype=np.int64)
        hits = self.tree.query_ball_point(self.entry.atom_positions[ligand_atoms], r=cutoff)
        near = np.concatenate([np.asarray(h, dtype=np.int64) for h in hits])
        rows = np.unique(self.entry.atom_residue[self.protein_atoms[near]])
        order = np.lexsort((self.entry.residue_position[rows], self.entry.residue_chain[rows]))
        return rows[order]


def binding_site(entry: Entry, residue_rows: np.ndarray, cutoff: float) -> BindingSite:
    """The pocket as a grammar object: the chains it touches, whole, with its residues marked."""
    chain_of = entry.residue_chain[residue_rows]
    chain_indices = list(dict.fromkeys(int(c) for c in chain_of))
    local = {chain: i for i, chain in enumerate(chain_indices)}
    protein = Protein(
        tuple(
            Chain(entry.chains[c].sequence, chain_id=entry.chains[c].chain_id,
                  residue_smiles=entry.chains[c].residue_smiles)
            for c in chain_indices
        ),
        source_id=entry.entry_id,
    )
    residues = tuple(
        (local[int(c)], int(p)) for c, p in zip(chain_of, entry.residue_position[residue_rows], strict=True)
    )
    residue_ids = tuple(entry.residue_ids[r] for r in residue_rows)
    return BindingSite(protein, Pocket(residues, cutoff=cutoff, residue_ids=residue_ids))


EXPANDED_TASKS = frozenset({"pocket_smiles", "trans", "complex_residue_surface_expanded_smiles"})


@lru_cache(maxsize=65536)
def ligand_dedup_key(smiles: str) -> str:
    """InChIKey (SMILES where InChI has none); cached, as the same ligands recur across entries."""
    return inchikey(smiles) or smiles


def entry_metadata(entry: Entry) -> dict[str, Any]:
    return metadata_without_nones(
        entry_id=entry.entry_id,
        file_format=entry.file_format,
        method=entry.method,
        resolution=entry.resolution,
        deposition_year=entry.deposition_year,
        model=entry.model_number,
    )


def protein_sample(entry: Entry, chain_indices: list[int], skipped: dict[str, dict[str, int]]) -> Sample:
    """One protein chain sequence of the entry, with every chain that carries it."""
    first = entry.chains[chain_indices[0]]
    protein = Protein((Chain(first.sequence, chain_id=first.chain_id),), source_id=entry.entry_id)
    metadata = entry_metadata(entry) | {
        "chain_ids": [entry.chains[i].chain_id for i in chain_indices],
        "entity_id": first.entity_id,
        "sequence_source": first.sequence_source,
        "ligands_skipped": skipped,
    }
    return Sample(
        "protein", "protein", FORMATS["protein"].write(protein), f"{entry.entry_id}:{first.chain_id}",
        dedup_key("protein", first.sequence), metadata, obj=protein,
    )


def ligand_samples(
    entry: Entry, ligand: Ligand, residue_rows: np.ndarray, component: ComponentSmiles, cutoff: float,
    tasks: Sequence[str],
) -> list[Sample]:
    """The pocket, complex, search and trans samples of one ligand instance."""
    site = binding_site(entry, residue_rows, cutoff)
    complex_ = Complex(site.protein, Molecule(component.smiles, source_id=ligand.ccd_id), site.pocket)
    ligand_key = ligand_dedup_key(component.smiles)
    sequences = "/".join(chain.sequence for chain in site.protein.chains)
    positions = ",".join(f"{c}:{i}" for c, i in site.pocket.residues)
    # Non-standard pocket residues change the SMILES-expanded texts (MSE is not MET there): keyed too.
    own = [(c, i, smiles) for c, chain in enumerate(site.protein.chains) for i, smiles in chain.residue_smiles
           if (c, i) in set(site.pocket.residues)]
    metadata = entry_metadata(entry) | {
        "chain_ids": [chain.chain_id for chain in site.protein.chains],
        "ligand_ccd_id": ligand.ccd_id,
        "ligand_instance": ligand.residue_id,
        "ligand_heavy_atoms": ligand.heavy_atoms,
        "ccd_heavy_atoms": component.heavy_atoms,
        "smiles_source": component.source,
        "covalent": ligand.covalent,
        "pocket_cutoff": cutoff,
        "pocket_residue_ids": list(site.pocket.residue_ids),
        "copies": [ligand.residue_id],
    }
    samples = []
    for task in tasks:
        if task == "protein":
            continue
        form = FORMATS[task]
        is_complex = form.domain == "complex"
        canonical = [task, sequences]
        if is_complex:
            canonical.append(ligand_key)
        if task != "complex_residue_smiles":  # every other form marks the pocket
            canonical.append(positions)
        if own and task in EXPANDED_TASKS:
            canonical.append(repr(own))
        obj = complex_ if is_complex else site
        samples.append(
            Sample(
                form.domain, task, form.write(obj),
                f"{entry.entry_id}:{ligand.residue_id}:{ligand.ccd_id}", dedup_key(form.domain, "|".join(canonical)),
                {**metadata, "copies": [ligand.residue_id]}, obj=obj,
            )
        )
    return samples
