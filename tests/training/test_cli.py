"""``logos train | launch | export hf``: clear one-line errors before any rank starts, the Ray Job spec."""

from __future__ import annotations

import json
import shlex
import shutil

import pytest

from tests.training.helpers import REPO, base_config, make_config, run_logos
from training.config import config_to_dict, load_config


def _write(path, data) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def test_unknown_config_key_is_one_line_error(tmp_path, blend_path):
    config = base_config(tmp_path / "run", blend_path) | {"optimiser": {"lr": 1.0}}
    done = run_logos("train", _write(tmp_path / "c.json", config))
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "unknown config key optimiser" in done.stderr
    assert "Traceback" not in done.stderr


def test_tokenizer_mismatch_fails_before_any_rank_starts(tmp_path, blend_path):
    copy = tmp_path / "blend"
    shutil.copytree(blend_path.parent, copy)
    raw = json.loads((copy / "blend.json").read_text())
    raw["tokenizer"]["vocab_size"] += 1
    (copy / "blend.json").write_text(json.dumps(raw))
    run_dir = tmp_path / "run"
    done = run_logos("train", _write(tmp_path / "c.json", base_config(run_dir, copy / "blend.json")))
    assert done.returncode == 2 and "vocab_size: blend says" in done.stderr
    assert not (run_dir / "logs").exists()


@pytest.mark.slow
def test_checkpoint_of_another_model_is_refused(tmp_path, blend_path, ref_tp2):
    config = base_config(tmp_path / "run", blend_path)
    config["model"] |= {"hidden_size": 128}
    config["checkpoint"] |= {"load": str(ref_tp2.checkpoint_dir)}
    done = run_logos("train", _write(tmp_path / "c.json", config))
    assert done.returncode == 2
    assert "has a different model: model.hidden_size 64 there, 128 here" in done.stderr


def test_export_of_a_missing_checkpoint(tmp_path):
    done = run_logos("export", "hf", str(tmp_path / "nothing"), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "no checkpoint at" in done.stderr


def test_ray_job_runs_logos_train_on_the_resolved_config(tmp_path, blend_path):
    from training.ray_launch import JOB_SCRIPT, job_spec
    from workflows.cli import build_parser

    config = make_config(tmp_path / "run", blend_path, "parallel.tensor=2", "optimizer.lr=1e-3")
    working_dir = tmp_path / "job"
    working_dir.mkdir()
    spec = job_spec(config, working_dir, {"env_vars": {"A": "1"}})
    assert spec["runtime_env"] == {"working_dir": str(working_dir), "env_vars": {"A": "1"}}
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["sh", JOB_SCRIPT] and (working_dir / JOB_SCRIPT).is_file()
    args = build_parser().parse_args(argv[2:])
    assert args.command == "train" and args.ray and args.func.__name__ == "_train"
    # The job reads the uploaded file relative to its working directory: the same config comes back.
    assert config_to_dict(load_config(working_dir / args.config)) == config_to_dict(config)


def test_ray_job_script_runs_logos_with_the_python_of_the_ray_workers(tmp_path, blend_path):
    """The job's shell has the PATH `ray start` saw (here one without this Python): the script finds the
    interpreter in the raylet's --python_worker_command, an ancestor's command line, as on a Ray node."""
    import subprocess
    import sys

    from training.ray_launch import JOB_SCRIPT, job_spec

    job_spec(make_config(tmp_path / "run", blend_path), tmp_path)
    raylet = ("import subprocess, sys; sys.exit(subprocess.call(['sh', sys.argv[1], 'train', '--help']))")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", raylet, JOB_SCRIPT,
                           f"--python_worker_command={sys.executable} setup_worker.py default_worker.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "usage: logos train" in done.stdout, done.stderr
    override = subprocess.run(["sh", JOB_SCRIPT, "train", "--help"], cwd=tmp_path, capture_output=True, text=True,
                              env={**env, "LOGOS_PYTHON": sys.executable})
    assert override.returncode == 0 and "usage: logos train" in override.stdout, override.stderr
