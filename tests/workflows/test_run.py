"""The demo workflow end to end, resume after an injected failure, and selective reruns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.versions import DatasetStore
from workflows.runner import FAIL_ENV, run_workflow
from workflows.workspace import InjectedFailure

DATA_STAGES = ["targets=[export]"]  # everything up to the Megatron export, no training

# ``demo`` (one run of the whole demo DAG, shared with test_report.py) is in conftest.py.


def test_demo_runs_end_to_end(demo):
    home, outcome = demo
    assert outcome.record.status == "succeeded"
    assert set(outcome.executed) >= {"pdb_shards", "chembl_shards", "mp_shards", "uspto_shards", "dedup",
                                     "split", "mix", "export", "trained", "hf_model", "report"}
    exported, trained = outcome.results["export"], outcome.results["trained"]
    blend = json.loads(exported.blend_path().read_text())
    assert set(blend["splits"]["train"]["domains"]) == {"protein", "pocket", "complex", "molecule", "reaction",
                                                        "material", "antibody"}
    losses = [json.loads(line)["loss"] for line in Path(trained.metrics_path).read_text().splitlines()
              if '"kind": "train"' in line]
    assert trained.steps == 30 and losses[-1] < losses[0] - 2.0  # the tiny model learns the grammar
    manifest = DatasetStore(home / "datasets").manifest(exported.ref)
    assert manifest.run["run_id"] == outcome.record.run_id  # lineage: the version names the run that made it
    report = Path(outcome.results["report"].path)
    assert {"mix_by_domain.png", "token_lengths.png", "rejects.png", "loss.png"} <= {p.name for p in report.iterdir()}
    assert exported.ref in (report / "index.html").read_text()


def test_demo_evaluates_the_tiny_model_on_every_task(demo):
    from training.evaluation.tasks import TASK_NAMES

    _, outcome = demo
    assert "evaluated" in outcome.executed
    results = json.loads((Path(outcome.results["evaluated"].path) / "results.json").read_text())
    assert set(results["tasks"]) == set(TASK_NAMES) and results["config"]["limit"] == 3
    assert results["dataset"]["ref"] == outcome.results["export"].ref
    assert results["tasks"]["perplexity"]["metrics"]["all"]["count"] > 0
    curves = json.loads((Path(outcome.results["evaluated"].path) / "curves.json").read_text())
    assert [s["step"] for s in curves["steps"]] == [15, 30]  # the demo checkpoints every 15 of 30 steps
    report = Path(outcome.results["report"].path)
    assert "Task metrics (logos eval)" in (report / "index.html").read_text() and (report / "eval_curves.png").is_file()


def test_exported_model_loads_with_transformers(demo):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, outcome = demo
    folder = outcome.results["hf_model"].path
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    ids = tokenizer("<MoleculeS>CC(=O)Nc1ccc(O)cc1<MoleculeE>", return_tensors="pt")["input_ids"]
    assert model(ids).logits.shape == (1, ids.shape[1], model.config.vocab_size)


def test_second_run_is_all_cache_hits(demo):
    home, first = demo
    again = run_workflow("demo", [f"home={home}"])
    assert again.executed == [] and again.results["export"].ref == first.results["export"].ref


def test_failed_run_resumes_without_redoing_finished_stages(demo, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv(FAIL_ENV, "split")
    with pytest.raises(InjectedFailure):
        run_workflow("demo", [f"home={home}", *DATA_STAGES])
    failed = [json.loads(p.read_text()) for p in (home / "runs").glob("*/run.json")]
    assert [r["status"] for r in failed] == ["failed"] and "split" in failed[0]["error"]

    monkeypatch.delenv(FAIL_ENV)
    resumed = run_workflow("demo", [f"home={home}", *DATA_STAGES])
    assert resumed.executed == ["export", "mix", "split"]  # ingest and dedup were cache hits
    # Same outputs as the uninterrupted run: the same content-addressed versions and exported files.
    reference = demo[1].results["export"]
    assert resumed.results["export"].ref == reference.ref
    assert json.loads(resumed.results["export"].blend_path().read_text()) == json.loads(
        reference.blend_path().read_text())

    changed = run_workflow("demo", [f"home={home}", *DATA_STAGES, "mix.temperature=1.0"])
    assert changed.executed == ["export", "mix"]  # only the changed stage and what depends on it
    assert changed.results["split"].ref == resumed.results["split"].ref
    assert changed.results["export"].ref != resumed.results["export"].ref

    resplit = run_workflow("demo", [f"home={home}", *DATA_STAGES, "split.config.salt=other"])
    assert resplit.executed == ["export", "mix", "split"]


def test_stage_whose_output_vanished_runs_again(demo, tmp_path):
    home, outcome = demo
    report = Path(outcome.results["report"].path)
    (report / "index.html").unlink()
    again = run_workflow("demo", [f"home={home}"])
    assert again.executed == ["report"] and (report / "index.html").is_file()


def test_stages_run_on_rays_adapter(demo, capsys):
    home, _ = demo
    outcome = run_workflow("demo", [f"home={home}", *DATA_STAGES, "executor=ray", "mix.temperature=5.0"])
    assert outcome.executed == ["export", "mix"] and outcome.results["export"].is_valid()
    lines = capsys.readouterr().err.splitlines()  # the stage lines are written on the driver, after the stages
    assert any(line.startswith("mix ") and line.endswith("[ran on Ray]") for line in lines), lines
    assert any(line.startswith("dedup ") and line.endswith("[cached]") for line in lines), lines
