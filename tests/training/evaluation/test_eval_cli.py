"""``logos eval`` end to end on a real split dataset: every task with --limit 3, the results JSON, scoring the
predictions it wrote, LOGOS's input layouts, a training checkpoint exported on the fly, and bad inputs."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from grammar.tags import MOLECULE_S, REVERSE_REACT, SEARCH
from pipeline.versions import Manifest
from tests.training.helpers import run_logos
from training.evaluation.tasks import TASK_NAMES
from workflows.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["eval", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def evaluation(eval_dataset, tiny_model, tmp_path_factory):
    """One `logos eval` of the tiny model on every task, printed as JSON."""
    out = tmp_path_factory.mktemp("eval") / "out"
    home = eval_dataset.store.root.parent
    code = main(["eval", str(tiny_model), "--dataset", eval_dataset.ref, "--limit", "3", "--samples", "2",
                 "--max-new-tokens", "8", "--out", str(out), "--home", str(home), "--json"])
    return code, out, home


def test_every_task_is_evaluated_into_one_results_json(evaluation, eval_dataset, capsys):
    code, out, _ = evaluation
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["tasks"]) == set(TASK_NAMES)
    assert results["dataset"]["ref"] == eval_dataset.ref
    assert results["model"]["tokenizer_hash"] == results["dataset"]["tokenizer_hash"]
    assert results["generation"] | {"engine": None} == {
        "engine": None, "samples": 2, "temperature": 1.2, "top_p": 0.9, "repetition_penalty": 1.05,
        "max_new_tokens": 8, "batch_size": 8, "seed": 1234}
    for name, entry in results["tasks"].items():
        assert entry["metrics"], name
        for metric in entry["metrics"].values():
            assert set(metric) >= {"value", "count"}
        if name != "perplexity":
            assert entry["settings"]["prompts"] == 3
            lines = (out / entry["predictions"]).read_text().splitlines()
            assert len(lines) == 6  # 3 prompts x 2 samples, in LOGOS's output layout
            assert set(json.loads(lines[0])) == {"id", "sample", "sequence", "groundtruth"}
    retro = results["tasks"]["retrosynthesis"]
    assert retro["metrics"]["top_1"]["count"] == 3 and retro["metrics"]["validity"]["count"] == 6
    assert results["tasks"]["ligand_design"]["skipped"][0]["what"] == "vina_score"
    # An untrained model predicts every token about equally: perplexity near the vocabulary size.
    vocab = 28_747
    assert 0.5 * vocab < results["tasks"]["perplexity"]["metrics"]["all"]["value"] < 2 * vocab


def test_scoring_the_written_predictions_gives_the_same_metrics(evaluation, capsys):
    _, out, _home = evaluation
    results = json.loads((out / "results.json").read_text())
    for task in ("retrosynthesis", "pocket_search", "material_generation"):
        code, stdout, _ = run_cli(capsys, "score", "--task", task, "--predictions",
                                  str(out / "predictions" / f"{task}.jsonl"), "--json")
        assert code == 0
        scored = json.loads(stdout)
        expected = {k: v for k, v in results["tasks"][task]["metrics"].items() if k != "novelty"}
        assert scored["metrics"] == expected and scored["counts"]["malformed_lines"] == 0


def test_export_prompts_in_logos_layouts(eval_dataset, tmp_path, capsys):
    home = eval_dataset.store.root.parent
    code, stdout, _ = run_cli(capsys, "export-prompts", "--dataset", eval_dataset.ref, "--format", "logos",
                              "--out", str(tmp_path / "prompts"), "--home", str(home))
    assert code == 0
    summary = json.loads(stdout)
    assert set(summary["files"]) == {"retrosynthesis", "forward_reaction", "pocket_search", "ligand_design"}
    rows = {t: [json.loads(x) for x in (tmp_path / "prompts" / f"{t}.jsonl").read_text().splitlines()]
            for t in summary["files"]}
    assert all(r["test_input"].endswith(REVERSE_REACT) and r["groundtruth"].startswith("<MoleculeS>")
               for r in rows["retrosynthesis"])
    assert all(r["text"].endswith(SEARCH) for r in rows["pocket_search"])
    assert all(r["protein_pocket_ligand"].endswith(MOLECULE_S) and "<PocketS>" in r["protein_pocket_ligand"]
               for r in rows["ligand_design"])
    # LOGOS's retrosynthesis script writes one file per input (0.jsonl, 1.jsonl, ...) of lines
    # {"sequence": the decoded prompt + answer, "ppl", "groundtruth"}: the references score 1.0.
    folder = tmp_path / "reversereact_eval_1.2_0.85_1.05"
    folder.mkdir()
    for n, r in enumerate(rows["retrosynthesis"]):
        line = {"sequence": "<bos>" + r["test_input"] + r["groundtruth"] + "<eos>", "ppl": 1.0,
                "groundtruth": r["groundtruth"]}
        (folder / f"{n}.jsonl").write_text(json.dumps(line) + "\n")
    code, stdout, _ = run_cli(capsys, "score", "--task", "retrosynthesis", "--predictions", str(folder), "--json")
    assert json.loads(stdout)["metrics"]["top_1"] == {"value": 1.0, "count": len(rows["retrosynthesis"])}
    # The binding-site script appends <ProteinS> to the prompt and writes the input's *id* as groundtruth:
    # --references (the exported prompts) turns the id into the annotated sequence.
    pockets = tmp_path / "pocket_results.jsonl"
    pockets.write_text("".join(json.dumps({"sequence": "<bos>" + r["text"] + "<ProteinS>" + r["groundtruth"]
                                           [len("<ProteinS>"):] + "<eos>", "groundtruth": r["id"], "ppl": 1.0})
                               + "\n" for r in rows["pocket_search"]))
    args = ["score", "--task", "pocket_search", "--predictions", str(pockets), "--json"]
    code, stdout, _ = run_cli(capsys, *args)
    unjoined = json.loads(stdout)  # an id is not a pocket annotation: said, and scored as a miss
    assert unjoined["counts"]["items_with_unreadable_groundtruth"] == len(rows["pocket_search"])
    assert unjoined["metrics"]["f1"]["value"] == 0.0
    code, stdout, _ = run_cli(capsys, *args, "--references", str(tmp_path / "prompts" / "pocket_search.jsonl"))
    scored = json.loads(stdout)
    assert scored["counts"]["items"] == len(rows["pocket_search"]) and scored["metrics"]["f1"]["value"] == 1.0
    assert scored["counts"]["items_with_unreadable_groundtruth"] == 0


def test_bad_inputs_are_one_line_errors_with_exit_2(eval_dataset, tiny_model, tmp_path, capsys):
    store, home = eval_dataset.store, eval_dataset.store.root.parent
    out = tmp_path / "never"
    common = ["--out", str(out), "--home", str(home), "--limit", "1"]
    # A dataset version tokenized with another tokenizer (its manifest names another hash).
    manifest = store.manifest(eval_dataset.ref)
    other = replace(manifest, version="0" * 16, tokenizer_hash="sha256:" + "1" * 64)
    (store.root / manifest.name / "manifests" / f"{other.version}.json").write_text(other.to_json())
    assert Manifest.from_json(other.to_json()).tokenizer_hash != manifest.tokenizer_hash
    cases = {
        "tokenizer mismatch": [str(tiny_model), "--dataset", other.ref],
        "has no test split": [str(tiny_model), "--dataset", eval_dataset.unsplit_ref],
        "unknown task 'retro'": [str(tiny_model), "--dataset", eval_dataset.ref, "--tasks", "retro"],
        "neither an HF export": [str(tmp_path), "--dataset", eval_dataset.ref],
    }
    for message, args in cases.items():
        code, _stdout, stderr = run_cli(capsys, *args, *common)
        assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, (message, stderr)
        assert not out.exists()
    (store.root / manifest.name / "manifests" / f"{other.version}.json").unlink()
    code, _, stderr = run_cli(capsys, "score", "--task", "retrosynthesis", "--predictions", str(tmp_path / "none"))
    assert code == 2 and "not found" in stderr
    code, _, stderr = run_cli(capsys, "score", "--task", "perplexity", "--predictions", str(tmp_path / "none"))
    assert code == 2 and "unknown task" in stderr


@pytest.mark.slow  # a training fixture run and a `logos eval` subprocess
def test_each_checkpoint_of_a_training_run_is_exported_and_evaluated(ref_tp1, eval_dataset, tmp_path):
    """The fixture run trained on molecules and proteins with a checkpoint every few steps: each is
    exported on the fly and evaluated; molecule perplexity falls below uniform and along the steps."""
    from workflows.report import write_report

    home, out = eval_dataset.store.root.parent, tmp_path / "out"
    done = run_logos("eval", str(ref_tp1.run_dir), "--every-checkpoint", "--dataset", eval_dataset.ref,
                     "--tasks", "molecule_generation", "perplexity", "--limit", "2", "--max-new-tokens", "8",
                     "--out", str(out), "--home", str(home), "--json", timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    curves = json.loads(done.stdout)
    checkpoints = sorted(p.name for p in (ref_tp1.run_dir / "checkpoints").glob("iter_*"))
    assert [f"iter_{s['step']:07d}" for s in curves["steps"]] == checkpoints and len(checkpoints) >= 2
    perplexity = [s["metrics"]["perplexity.molecule/molecule"] for s in curves["steps"]]
    assert perplexity[-1] < perplexity[0] and math.log(perplexity[-1]) < math.log(28_747) - 1.0
    last = out / "steps" / checkpoints[-1].replace("iter_", "step_") / "results.json"
    results = json.loads(last.read_text())
    assert results["model"]["exported_from"] == curves["steps"][-1]["checkpoint"]
    assert not (last.parent / "model").exists()  # on-the-fly exports are removed once evaluated
    assert json.loads((out / "results.json").read_text()) == results
    page = write_report(eval_dataset.store, eval_dataset.ref, tmp_path / "report", eval_results=out / "results.json")
    assert (tmp_path / "report" / "eval_curves.png").is_file() and "Task metrics (logos eval)" in page.read_text()
