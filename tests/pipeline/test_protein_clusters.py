"""The production protein clustering (``method="auto"`` -> MMseqs2) on real PDB chains, checked against
expectations that do not come from MMseqs2: the PDB's own molecule names in ``pdb_seqres.txt`` (myoglobin,
T4 lysozyme, glutathione S-transferase P1-1, M.HhaI methyltransferase) and pairwise identities from a
second toolkit (Biopython's global aligner, BLOSUM62)."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
from Bio import SeqIO
from Bio.Align import PairwiseAligner, substitution_matrices

from pipeline.split import ProteinClusterConfig, cluster_sequences

SEQRES = Path(__file__).resolve().parents[1] / "data/uniprot/pdb_seqres_excerpt_first28records.txt"


@pytest.fixture(scope="module")
def chains() -> dict[str, tuple[str, str]]:
    """PDB chain id -> (molecule name as the PDB gives it, sequence); 10mh_A appears twice in the file."""
    out = {}
    for record in SeqIO.parse(SEQRES, "fasta"):
        name = record.description.split("  ", 1)[1].strip()
        out[record.id] = (name, str(record.seq))
    return out


def identity(a: str, b: str) -> float:
    """Identical aligned residues over the shorter sequence (Biopython global alignment, BLOSUM62)."""
    aligner = PairwiseAligner(mode="global", substitution_matrix=substitution_matrices.load("BLOSUM62"),
                              open_gap_score=-10, extend_gap_score=-0.5)
    counts = aligner.align(a, b)[0].counts()
    return counts.identities / min(len(a), len(b))


def test_mmseqs_is_the_production_method_here():
    # .ci/run installs Debian's mmseqs2; a missing binary must fail here, not fall back silently.
    assert shutil.which("mmseqs"), "mmseqs not on PATH: install the Debian package mmseqs2 (see .ci/run)"


def test_clusters_are_the_pdb_molecules_and_agree_with_an_independent_aligner(chains):
    ids = sorted(chains)
    groups, method = cluster_sequences([[chains[i][1]] for i in ids], ProteinClusterConfig())  # method "auto"
    assert method == "mmseqs"
    group_of = dict(zip(ids, groups, strict=True))
    by_molecule: dict[str, set[str]] = {}
    for chain_id in ids:
        by_molecule.setdefault(chains[chain_id][0], set()).add(group_of[chain_id])
    # Each molecule the PDB names is one cluster, and no two molecules share one.
    assert {name: len(g) for name, g in by_molecule.items()} == dict.fromkeys(by_molecule, 1)
    assert len(set(groups)) == len(by_molecule) == 4
    # Pairwise, from Biopython: every pair in one cluster is >= 90% identical (point mutants), every pair
    # across clusters below the configured 30% (unrelated folds).
    min_seq_id = ProteinClusterConfig().min_seq_id
    representatives = {name: next(i for i in ids if chains[i][0] == name) for name in by_molecule}
    for name in by_molecule:
        members = [i for i in ids if chains[i][0] == name]
        assert all(identity(chains[members[0]][1], chains[m][1]) >= 0.9 for m in members[1:]), name
    for a, b in itertools.combinations(representatives.values(), 2):
        assert identity(chains[a][1], chains[b][1]) < min_seq_id, (a, b)
