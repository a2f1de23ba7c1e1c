"""Scorers on real test-split records (references as predictions, references shuffled across items) and on
small hand-checked cases for each metric. Expected values are counted by hand or come from the libraries
(RDKit, pymatgen, SMACT) called here directly, never from the scorer's own output."""

from __future__ import annotations

import json

import pytest
from pymatgen.core import Lattice, Structure
from rdkit import Chem
from rdkit.Chem import QED

from grammar.material import Crystal, write_crystal
from training.evaluation.predictions import read_predictions, score_file
from training.evaluation.scoring import (
    compositionally_valid,
    distinct_crystals,
    drug_likeness,
    molecule_set,
    moses_metrics,
    score_answers,
    score_materials,
    score_pockets,
    score_reactions,
    structurally_valid,
)
from training.evaluation.tasks import TASKS, build_items, extract_answer


def values(metrics: dict) -> dict:
    return {name: m["value"] for name, m in metrics.items()}


def items_of(task: str, test_split) -> list:
    return build_items(TASKS[task], test_split, None)


@pytest.mark.parametrize("task", ["retrosynthesis", "forward_reaction", "pocket_search"])
def test_references_scored_as_predictions_are_perfect(task, test_split):
    items = items_of(task, test_split)
    assert len(items) >= 4
    metrics = score_answers(task, [(i.reference, [i.reference]) for i in items])
    assert all(m["value"] == 1.0 for m in metrics.values()), metrics
    assert {m["count"] for m in metrics.values()} == {len(items)}


def test_shuffled_references_score_near_zero(test_split):
    items = items_of("retrosynthesis", test_split)
    references = [i.reference for i in items]
    rotated = references[1:] + references[:1]  # every item gets another item's reactants
    distinct = sum(molecule_set(a) != molecule_set(b) for a, b in zip(references, rotated, strict=True))
    metrics = score_reactions([(r, [p]) for r, p in zip(references, rotated, strict=True)], (1,))
    assert metrics["validity"]["value"] == 1.0
    assert metrics["top_1"]["value"] == pytest.approx(1 - distinct / len(items)) and metrics["top_1"]["value"] < 0.1
    pockets = items_of("pocket_search", test_split)
    pairs = list(zip(pockets, pockets[1:] + pockets[:1], strict=True))
    swapped = values(score_pockets([(a.reference, [b.reference]) for a, b in pairs]))
    # Two pocket records of one protein (two ligands) share a sequence: the prompts say which pairs do.
    assert swapped["identical_sequence"] == pytest.approx(sum(a.prompt == b.prompt for a, b in pairs) / len(pairs))
    assert swapped["f1"] < 0.5


def test_generated_references_of_unconditional_tasks_are_valid(test_split, eval_dataset):
    from training.evaluation.references import TrainReference

    train = TrainReference(eval_dataset.store, eval_dataset.store.manifest(eval_dataset.ref))
    molecules = test_split.filter(test_split["task"] == "molecule")["text"].to_list()[:20]
    answers = [extract_answer(TASKS["molecule_generation"], t) for t in molecules]
    metrics = score_answers("molecule_generation", [(None, answers)], train)
    # Test molecules are not in the train split (the split is by scaffold): all valid, distinct, novel.
    assert values(metrics) == {"validity": 1.0, "uniqueness": 1.0, "novelty": 1.0}
    ligands = items_of("ligand_design", test_split)
    assert values(score_answers("ligand_design", [(i.reference, [i.reference]) for i in ligands], train))[
        "validity"] == 1.0
    crystals = test_split.filter(test_split["task"] == "material")["text"].to_list()
    answers = [extract_answer(TASKS["material_generation"], t) for t in crystals]
    material = values(score_answers("material_generation", [(None, answers)], train))
    assert material["parse_validity"] == 1.0 and material["structural_validity"] == 1.0


def test_reactant_sets_ignore_order_spelling_and_atom_maps():
    reference = "<MoleculeS>CC(=O)Cl<MoleculeE><MoleculeS>OCC<MoleculeE>"
    reordered = "<MoleculeS>C(C)O<MoleculeE><MoleculeS>ClC(C)=O<MoleculeE>"  # other order, non-canonical
    mapped = "<MoleculeS>[CH3:1][CH2:2][OH:3]<MoleculeE><MoleculeS>CC(Cl)=O<MoleculeE>"
    wrong = "<MoleculeS>CC(=O)Cl<MoleculeE><MoleculeS>OC<MoleculeE>"
    assert molecule_set(reordered) == molecule_set(mapped) == molecule_set(reference)
    metrics = score_reactions([(reference, [reordered]), (reference, [mapped]), (reference, [wrong])], (1,))
    assert metrics["top_1"] == {"value": 2 / 3, "count": 3}


def test_top_k_ranks_candidates_by_frequency_and_counts_invalid_samples():
    right, other = "<MoleculeS>CCO<MoleculeE>", "<MoleculeS>CCN<MoleculeE>"
    invalid = "<MoleculeS>C1CC<MoleculeE>"  # unclosed ring
    samples = [other, right, other, invalid, None, "no molecule at all"]
    metrics = score_reactions([(right, samples)], (1, 3))
    # `other` twice beats `right` once: top-1 misses, top-3 hits; 3 of 6 samples are valid.
    assert values(metrics) == {"top_1": 0.0, "top_3": 1.0, "validity": 0.5}


def test_pocket_precision_recall_by_hand():
    reference = "<ProteinS>M<PocketS>K<PocketE>V<PocketS>L<PocketE>A<PocketS>G<PocketE><ProteinE>"
    # predicted pockets at residues 1 and 2; the reference has 1, 3, 5: precision 1/2, recall 1/3.
    predicted = "<ProteinS>M<PocketS>K<PocketE><PocketS>V<PocketE>LAG<ProteinE>"
    other_sequence = "<ProteinS>M<PocketS>K<PocketE>VLAA<ProteinE>"  # precision 1, recall 1/3, sequence differs
    metrics = values(score_pockets([(reference, [predicted, other_sequence, "<ProteinS>MK"])]))
    f1_a, f1_b = 2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3), 2 * 1 * (1 / 3) / (1 + 1 / 3)
    assert metrics["precision"] == pytest.approx((1 / 2 + 1) / 3)
    assert metrics["recall"] == pytest.approx((1 / 3 + 1 / 3) / 3)
    assert metrics["f1"] == pytest.approx((f1_a + f1_b) / 3)
    assert metrics["identical_sequence"] == pytest.approx(1 / 3) and metrics["validity"] == pytest.approx(2 / 3)


def test_moses_metrics_on_a_hand_counted_list():
    generated = ["CCO", "OCC", "c1ccccc1", "C1CC", "", None, "CCN", "CC(=O)O"]
    # valid: CCO, OCC (= CCO), benzene, CCN, acetic acid -> 5 of 8; distinct: 4 -> uniqueness 4/5;
    # the train set holds ethanol and benzene -> novel: CCN, acetic acid -> 2/4.
    train = {Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in ("OCC", "C1=CC=CC=C1")}
    metrics = moses_metrics(generated, train)
    assert values(metrics) == {"validity": 5 / 8, "uniqueness": 4 / 5, "novelty": 2 / 4}
    assert [m["count"] for m in metrics.values()] == [8, 5, 4]


def test_qed_and_sa_score_of_known_molecules():
    likeness = drug_likeness(["CC(=O)Nc1ccc(O)cc1", "not a molecule"])
    assert likeness["qed"] == {"value": pytest.approx(QED.qed(Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1"))), "count": 1}
    # Ertl & Schuffenhauer: simple drug-like molecules score ~1-3 on the 1 (easy) .. 10 (hard) scale.
    assert 1.0 < likeness["sa_score"]["value"] < 2.5


def rocksalt(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_smact_charge_neutrality():
    assert compositionally_valid(rocksalt().composition)
    assert not compositionally_valid(Structure(Lattice.cubic(4.0), ["Na", "Cl", "Cl"],
                                               [[0, 0, 0], [0.5, 0.5, 0.5], [0, 0.5, 0.5]]).composition)
    assert compositionally_valid(Structure(Lattice.cubic(2.9), ["Fe"], [[0, 0, 0]]).composition)  # a metal


def test_structural_validity_needs_atoms_half_an_angstrom_apart():
    assert structurally_valid(rocksalt())
    assert not structurally_valid(Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.1, 0, 0]]))  # 0.4 Å


def test_crystals_that_structure_matcher_matches_count_once():
    primitive = rocksalt()
    strained = rocksalt(5.70)  # 1% larger cell: the same crystal within StructureMatcher's tolerance
    other = rocksalt(5.64).copy()
    other.replace_species({"Na": "K"})
    crystals = [Crystal(s) for s in (primitive, strained, other)]
    assert len(distinct_crystals(crystals)) == 2
    answers = [extract_answer(TASKS["material_generation"], write_crystal(c)) for c in crystals]
    metrics = values(score_materials([*answers, "[Na]<n1>garbage"], lambda formula: []))
    assert metrics["parse_validity"] == 3 / 4 and metrics["uniqueness"] == 2 / 3 and metrics["novelty"] == 1.0
    known = values(score_materials(answers, lambda formula: [crystals[0]] if formula == "NaCl" else []))
    assert known["novelty"] == 1 / 2  # NaCl is in the "train set", KCl is not


def test_logos_script_output_with_malformed_lines(tmp_path, test_split):
    items = items_of("retrosynthesis", test_split)[:3]
    lines = [json.dumps({"sequence": f"<bos>{i.prompt}{i.reference}<eos><pad>", "ppl": 1.5,
                         "groundtruth": i.reference}) for i in items]
    lines += ["{not json", json.dumps({"groundtruth": items[0].reference, "ppl": 2.0}), "", json.dumps([1, 2])]
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join(lines) + "\n")
    scored = read_predictions(TASKS["retrosynthesis"], path)
    assert (scored.lines, scored.malformed, scored.blank) == (6, 3, 1)
    result = score_file("retrosynthesis", path)
    # 3 right items + 2 unreadable lines of their own (the line without a sequence joins item 0's group).
    assert result["metrics"]["top_1"] == {"value": 3 / 5, "count": 5}
    assert result["metrics"]["validity"] == {"value": 3 / 6, "count": 6}


def test_logos_material_output_layout(tmp_path, test_split):
    crystals = test_split.filter(test_split["task"] == "material")["text"].to_list()[:2]
    path = tmp_path / "materials.jsonl"
    path.write_text("".join(json.dumps({"text": t, "ppl": 8.5}) + "\n" for t in crystals) + '{"ppl": 3.0}\n')
    result = score_file("material_generation", path)
    assert result["metrics"]["parse_validity"] == {"value": 2 / 3, "count": 3}
    assert result["counts"]["malformed_lines"] == 1
    assert result["skipped"][0]["what"] == "novelty"  # no --dataset: no train split to compare with
