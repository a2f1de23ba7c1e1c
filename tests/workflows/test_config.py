from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.options import ConfigError
from workflows.config import load_workflow


def test_bundled_configs_load():
    demo, full = load_workflow("demo"), load_workflow("full")
    assert {"pdb", "chembl", "mp", "uspto", "uniprot", "mof"} <= set(demo.config.ingest.sources)
    assert full.config.train["model"] == {"preset": "1b"} and full.config.ingest.workers == 64
    assert all((demo.base_dir / i).resolve().exists() for s in demo.config.ingest.sources.values() for i in s.inputs)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("dedup.near.threshhold=0.5", "unknown config key dedup.near.threshhold"),
        ("split.config.fractions=[0.5,0.5]", "split.config: fractions must be three"),
        ("mix.temperature=hot", "mix.temperature: expected float"),
        ("ingest.sources.chemble.inputs=[x]", "ingest.sources.chemble: unknown source"),
        ("ingest.sources.pdb.options.pocket_cutof=4", "unknown config key ingest.sources.pdb.options.pocket_cutof"),
        ("train.parallel.tensor=two", "train: parallel.tensor: expected int"),
        ("train.data.blend=x.json", "train.data.blend: set by the workflow"),
        ("targets=[everything]", "targets: unknown target 'everything'"),
        ("executor=spark", "executor: must be local or ray"),
        ("eval.tasks=[retro]", "eval: unknown task 'retro'"),
        ("eval.samples=0", "eval: samples, max_new_tokens and batch_size must be at least 1"),
    ],
)
def test_invalid_configs_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_workflow("demo", [override])


def test_the_evaluated_target_needs_an_eval_section():
    assert load_workflow("demo").config.eval.limit == 3
    with pytest.raises(ConfigError, match="targets: evaluated needs an eval section"):
        load_workflow("demo", ["targets=[evaluated]", "eval=null"])


def test_invalid_yaml_file_and_unknown_workflow(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ningest: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_workflow(str(bad))
    with pytest.raises(ConfigError, match="no workflow 'nope'"):
        load_workflow("nope")


def test_cli_dry_run_plan_and_drawing(tmp_path):
    run = [sys.executable, "-m", "workflows.cli", "run", "demo", "--set", f"home={tmp_path / 'home'}"]
    plan = subprocess.run([*run, "--dry-run"], capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stderr[-2000:]
    lines = dict(line.split(None, 1) for line in plan.stdout.splitlines()[1:])
    assert lines["pdb_shards"] == "would run" and lines["smiles_shards"] == "not configured"
    assert lines["trained"] == "would run" and not (tmp_path / "home" / "runs").exists()  # nothing ran
    image = tmp_path / "dag.png"
    drawn = subprocess.run([*run, "--draw", str(image)], capture_output=True, text=True, timeout=300)
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run([*run, "--set", "mix.temperature=hot", "--dry-run"], capture_output=True, text=True)
    assert bad.returncode == 2 and "mix.temperature: expected float" in bad.stderr
