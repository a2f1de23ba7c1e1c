"""Metrics: pure functions over answer strings (what a model wrote after the task token).

Every metric is ``{"value": float | None, "count": n}``: the value and the number it is averaged over
(None when there is nothing to average). A sample that could not be read at all (a malformed predictions
line) is passed as ``None`` and counts as an invalid prediction, never dropped.

- Reactions (retrosynthesis, forward): RDKit canonical SMILES with atom maps removed; a prediction is the
  *set* of molecules (order and SMILES spelling do not matter). Candidates of one item are ranked by how
  many samples produced them, ties by first appearance; top-k counts an item when its reference set is
  among the first k distinct valid candidates (the usual way to rank sampled retrosynthesis outputs).
- Pockets: residue-level precision/recall/F1 of (chain, residue index) positions, per sample, averaged;
  plus the fraction of samples whose sequence equals the input's.
- Molecules: validity, uniqueness and novelty as MOSES defines them (``moses.metrics``: valid = RDKit
  parses a non-empty SMILES; uniqueness = distinct canonical SMILES / valid; novelty = distinct valid not
  in the training set / distinct valid). Written here from those definitions because the ``molsets``
  package pins pandas/numpy versions this project cannot install; tested on hand-counted lists.
- Ligands: the molecule metrics, plus QED (RDKit) and SA score (Ertl & Schuffenhauer; RDKit's Contrib
  ``sascorer``, shipped in the rdkit wheel) over valid samples.
- Crystals: the CDVAE/DiffCSP set: structural validity (all interatomic distances > 0.5 Å, volume >= 0.1
  Å^3), compositional validity (SMACT: charge neutral with an electronegativity-consistent assignment,
  ``smact.screening.smact_validity``, as CDVAE), uniqueness and novelty under ``StructureMatcher``
  (ltol 0.2, stol 0.3, angle_tol 5, the grammar's ``crystals_match``).
"""

from __future__ import annotations

import math
import os
import re
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from grammar.errors import GrammarError
from training.evaluation.tasks import TASKS, material_text, molecule_blocks

Metric = dict[str, Any]
REACTION_TOP_K = (1, 3, 5, 10)
MIN_DISTANCE = 0.5  # Å, CDVAE's structural validity cutoff
MIN_VOLUME = 0.1  # Å^3


def metric(total: float, count: int) -> Metric:
    return {"value": total / count if count else None, "count": count}


@cache
def _quiet_rdkit() -> None:
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")  # invalid generated SMILES are expected and counted, not logged


def canonical_smiles(smiles: str | None) -> str | None:
    """RDKit canonical isomeric SMILES without atom maps; None for an empty or unparseable SMILES."""
    if smiles is None or not smiles.strip():
        return None
    from rdkit import Chem

    _quiet_rdkit()
    mol = Chem.MolFromSmiles(smiles.strip())
    if mol is None:
        return None
    for atom in mol.GetAtoms():
        atom.SetAtomMapNum(0)
    return Chem.MolToSmiles(mol)


def molecule_set(answer: str | None) -> frozenset[str] | None:
    """The set of molecules in ``<MoleculeS>…<MoleculeE>`` blocks (dot-separated fragments split), or
    None when there is none or one does not parse."""
    if answer is None:
        return None
    blocks = molecule_blocks(answer)
    if not blocks:
        return None
    canonical = [canonical_smiles(b) for b in blocks]
    if any(c is None for c in canonical):
        return None
    return frozenset(fragment for c in canonical for fragment in c.split("."))


def ranked(candidates: Sequence[frozenset[str] | None]) -> list[frozenset[str]]:
    """Distinct valid candidates, most frequent first, ties in order of first appearance."""
    counts = Counter(c for c in candidates if c is not None)
    first = {c: i for i, c in reversed(list(enumerate(candidates))) if c is not None}
    return sorted(counts, key=lambda c: (-counts[c], first[c]))


def score_reactions(items: Sequence[tuple[str | None, Sequence[str | None]]], ks: Sequence[int]) -> dict[str, Metric]:
    """Top-k exact match of molecule sets and validity, over (reference answer, sample answers) items."""
    hits = dict.fromkeys(ks, 0)
    valid = samples = 0
    for reference, answers in items:
        target = molecule_set(reference)
        candidates = [molecule_set(a) for a in answers]
        samples += len(candidates)
        valid += sum(c is not None for c in candidates)
        order = ranked(candidates)
        for k in ks:
            hits[k] += target is not None and target in order[:k]
    out = {f"top_{k}": metric(hits[k], len(items)) for k in ks}
    return out | {"validity": metric(valid, samples)}


def pocket_chains(answer: str | None) -> tuple[tuple[str, ...], frozenset[tuple[int, int]]] | None:
    """(chain sequences, pocket positions) of a one-letter pocket-annotated protein; None if unreadable."""
    if answer is None:
        return None
    from grammar.lexer import TokenStream
    from grammar.protein import read_chains

    try:
        stream = TokenStream(answer)
        chains = read_chains(stream)
        stream.expect_end()
    except GrammarError:
        return None
    if any(c.expanded for c in chains):  # SMILES-expanded residues are the <Trans> task's answer
        return None
    positions = frozenset((c, p) for c, chain in enumerate(chains) for p in chain.pocket_positions)
    return tuple(c.sequence for c in chains), positions


def score_pockets(items: Sequence[tuple[str | None, Sequence[str | None]]]) -> dict[str, Metric]:
    """Residue-level precision, recall, F1 per sample (an unreadable sample scores 0), averaged."""
    totals = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "identical_sequence": 0.0, "validity": 0.0}
    samples = 0
    for reference, answers in items:
        target = pocket_chains(reference)
        for answer in answers:
            samples += 1
            found = pocket_chains(answer)
            if found is None:
                continue
            totals["validity"] += 1
            if target is None:
                continue
            sequences, predicted = found
            overlap = len(predicted & target[1])
            precision = overlap / len(predicted) if predicted else 0.0
            recall = overlap / len(target[1]) if target[1] else 0.0
            totals["precision"] += precision
            totals["recall"] += recall
            totals["f1"] += 2 * precision * recall / (precision + recall) if overlap else 0.0
            totals["identical_sequence"] += sequences == target[0]
    return {name: metric(total, samples) for name, total in totals.items()}


def moses_metrics(smiles: Sequence[str | None], train: set[str] | None) -> dict[str, Metric]:
    """MOSES validity, uniqueness and novelty; novelty is None-valued without a training set."""
    canonical = [canonical_smiles(s) for s in smiles]
    valid = [c for c in canonical if c is not None]
    distinct = set(valid)
    out = {"validity": metric(len(valid), len(canonical)), "uniqueness": metric(len(distinct), len(valid))}
    if train is not None:
        out["novelty"] = metric(len(distinct - train), len(distinct))
    return out


@cache
def _sascorer() -> Any:
    from rdkit.Chem import RDConfig

    path = os.path.join(RDConfig.RDContribDir, "SA_Score")
    if not os.path.isfile(os.path.join(path, "sascorer.py")):
        raise RuntimeError(f"RDKit's Contrib SA_Score/sascorer.py is missing from {RDConfig.RDContribDir}")
    if path not in sys.path:
        sys.path.append(path)
    import sascorer

    return sascorer


def drug_likeness(smiles: Sequence[str | None]) -> dict[str, Metric]:
    """Mean QED and SA score over the valid SMILES."""
    from rdkit import Chem
    from rdkit.Chem import QED

    mols = [Chem.MolFromSmiles(c) for c in map(canonical_smiles, smiles) if c is not None]
    sascorer = _sascorer()
    return {
        "qed": metric(sum(QED.qed(m) for m in mols), len(mols)),
        "sa_score": metric(sum(sascorer.calculateScore(m) for m in mols), len(mols)),
    }


def docking_skipped_reason() -> str:
    """Why Vina docking does not run here (it needs the ``vina`` package and receptor structures)."""
    import importlib.util
    import shutil

    if importlib.util.find_spec("vina") is None and shutil.which("vina") is None:
        return "AutoDock Vina (`vina`) is not installed"
    return ("no receptor structures: dataset records carry pocket-annotated sequences, not the receptor "
            "coordinates (PDBQT) docking needs")


def score_ligands(answers: Sequence[str | None], train: set[str] | None) -> dict[str, Metric]:
    return moses_metrics(answers, train) | drug_likeness(answers)


def parse_material(answer: str | None) -> tuple[str, Any] | None:
    """("crystal", Crystal) or ("mof", MOF) for a generated material answer; None when it does not parse."""
    if answer is None:
        return None
    from grammar.material import parse_crystal, parse_mof
    from grammar.tags import METAL_S

    text = material_text(answer)
    try:
        return ("mof", parse_mof(text)) if METAL_S in answer else ("crystal", parse_crystal(text))
    except (GrammarError, ValueError):
        return None


def structurally_valid(structure: Any) -> bool:
    """CDVAE: every interatomic distance (periodic images included) above 0.5 Å and volume >= 0.1 Å^3."""
    import numpy as np

    distances = structure.distance_matrix + np.eye(len(structure)) * (MIN_DISTANCE + 10.0)
    return bool(distances.min() > MIN_DISTANCE) and structure.volume >= MIN_VOLUME


def compositionally_valid(composition: Any) -> bool:
    """SMACT charge neutrality with the Pauling electronegativity test (pure metals/alloys pass), as CDVAE."""
    from smact.screening import smact_validity

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(smact_validity(composition, use_pauling_test=True, include_alloys=True))


def distinct_crystals(crystals: Sequence[Any]) -> list[Any]:
    """One representative per StructureMatcher class (compared within a reduced formula)."""
    from grammar.material import crystals_match

    kept: dict[str, list[Any]] = {}
    for crystal in crystals:
        group = kept.setdefault(crystal.structure.composition.reduced_formula, [])
        if not any(crystals_match(crystal, other) for other in group):
            group.append(crystal)
    return [c for group in kept.values() for c in group]


def score_materials(
    answers: Sequence[str | None], train_crystals: Callable[[str], Sequence[Any]] | None
) -> dict[str, Metric]:
    """Parse, structural and compositional validity; uniqueness and novelty of the valid crystals.

    ``train_crystals(reduced_formula)`` gives the training crystals of one formula (novelty needs only
    those); without it novelty is left out.
    """
    from grammar.material import crystals_match

    parsed = [parse_material(a) for a in answers]
    crystals = [p[1] for p in parsed if p is not None and p[0] == "crystal"]
    structural = [structurally_valid(c.structure) for c in crystals]
    compositional = [compositionally_valid(c.structure.composition) for c in crystals]
    valid = [c for c, s, k in zip(crystals, structural, compositional, strict=True) if s and k]
    distinct = distinct_crystals(valid)
    out = {
        "parse_validity": metric(sum(p is not None for p in parsed), len(answers)),
        "mofs": metric(sum(p is not None and p[0] == "mof" for p in parsed), len(answers)),
        "structural_validity": metric(sum(structural), len(crystals)),
        "compositional_validity": metric(sum(compositional), len(crystals)),
        "validity": metric(len(valid), len(answers)),
        "uniqueness": metric(len(distinct), len(valid)),
    }
    if train_crystals is not None:
        novel = sum(
            not any(crystals_match(c, t) for t in train_crystals(c.structure.composition.reduced_formula))
            for c in distinct
        )
        out["novelty"] = metric(novel, len(distinct))
    return out


_FORMULA_PIECE = re.compile(r"\[([A-Z][a-z]?)\]<n(\d+)>")


def material_header_formula(text: str) -> str | None:
    """The reduced formula a crystal text's header states (read without decoding the crystal)."""
    from pymatgen.core import Composition

    header = text.split("<sg", 1)[0]
    pieces = _FORMULA_PIECE.findall(header)
    if not pieces:
        return None
    try:
        return Composition({element: int(n) for element, n in pieces}).reduced_formula
    except (ValueError, KeyError):
        return None


def score_answers(
    task: str, items: Sequence[tuple[str | None, Sequence[str | None]]], train: Any | None = None
) -> dict[str, Metric]:
    """The task's metrics over (reference answer, sample answers) items. ``train``: a ``TrainReference``
    (``training.evaluation.run``) for novelty, or None to leave novelty out."""
    answers = [a for _, samples in items for a in samples]
    if task == "retrosynthesis":
        return score_reactions(items, REACTION_TOP_K)
    if task == "forward_reaction":
        return score_reactions(items, (1,))
    if task == "pocket_search":
        return score_pockets(items)
    if task == "ligand_design":
        return score_ligands(answers, train.molecules() if train else None)
    if task == "molecule_generation":
        return moses_metrics(answers, train.molecules() if train else None)
    if task == "material_generation":
        return score_materials(answers, train.crystals if train else None)
    raise KeyError(f"no scorer for task {task!r} (scored tasks: {', '.join(TASKS)})")


def perplexity(total_nll: float, tokens: int) -> Metric:
    return {"value": math.exp(total_nll / tokens) if tokens else None, "count": tokens}
