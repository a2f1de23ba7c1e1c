"""Multi-process training on CPU: TP/PP/DP equivalences, checkpoint resharding, kill-and-resume, Ray.

Every run trains the tiny Llama on the fixture blend (real molecules and proteins); the reference
runs (TP=1, TP=2, a Qwen3-style PP=2) are session fixtures shared with the export tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.training.helpers import REPO, make_config, processes_of_launch, train_losses
from training.config import config_to_dict
from training.metrics import read_metrics

pytestmark = pytest.mark.slow


def _falls(losses: list[float]) -> bool:
    return losses[-1] < losses[0] - 1.0 and min(losses[-4:]) < min(losses[:4])


def test_tp2_losses_equal_tp1_losses(ref_tp1, ref_tp2):
    tp1, tp2 = train_losses(ref_tp1.metrics_path), train_losses(ref_tp2.metrics_path)
    assert len(tp1) == len(tp2) == 16
    assert tp2 == pytest.approx(tp1, abs=1e-4)
    assert _falls(tp1)
    assert ref_tp2.valid_loss == pytest.approx(ref_tp1.valid_loss, abs=1e-4)
    assert set(ref_tp1.valid_loss) == {"molecule", "protein"}


def test_pipeline_parallel_and_tp2_pp2_train(qwen_pp2, runs_dir, blend_path):
    from training.run import train

    tp2_pp2 = train(make_config(runs_dir / "qwen_tp2_pp2", blend_path, "parallel.pipeline=2", "parallel.tensor=2",
                                "data.micro_batch_size=1", "model.qk_layernorm=true", "model.tie_embeddings=false"))
    pp2, both = train_losses(qwen_pp2.metrics_path), train_losses(tp2_pp2.metrics_path)
    assert len(pp2) == len(both) == 16
    assert _falls(pp2) and _falls(both)
    # CPU initialisation splits the same full weights, so adding TP=2 to PP=2 changes nothing.
    assert both == pytest.approx(pp2, abs=1e-4)
    records = read_metrics(qwen_pp2.metrics_path)
    assert all(r["tokens_per_s"] > 0 and r["lr"] > 0 for r in records)


def test_checkpoint_saved_at_tp2_loads_at_tp1_with_the_same_loss(ref_tp2, runs_dir, blend_path):
    from training.run import train

    loaded = train(make_config(runs_dir / "tp1_from_tp2", blend_path, f"checkpoint.load={ref_tp2.checkpoint}"))
    assert loaded.steps == 16 and loaded.final_loss is None  # nothing left to train: evaluation only
    # The fixed validation batches of each domain give the same loss in the new layout.
    assert loaded.valid_loss == pytest.approx(ref_tp2.valid_loss, abs=1e-5)
    resumed = [r for r in (loaded.run_dir / "metrics.jsonl").read_text().splitlines() if '"resume"' in r]
    assert json.loads(resumed[0])["checkpoint"] == str(ref_tp2.checkpoint)


def test_pipeline_checkpoint_loads_without_pipeline(qwen_pp2, runs_dir, blend_path):
    from training.run import train

    loaded = train(make_config(runs_dir / "qwen_tp2_from_pp2", blend_path, "parallel.tensor=2",
                               "model.qk_layernorm=true", "model.tie_embeddings=false",
                               f"checkpoint.load={qwen_pp2.checkpoint_dir}"))
    assert loaded.valid_loss == pytest.approx(qwen_pp2.valid_loss, abs=1e-5)


def _start(config_path: Path, log: Path) -> subprocess.Popen:
    with log.open("a") as out:
        return subprocess.Popen([sys.executable, "-m", "workflows.cli", "train", str(config_path)], cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(process: subprocess.Popen, condition, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the run ended (rc {process.returncode}) before the kill point:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for the kill point")
        time.sleep(0.02)


def _progress(run_dir: Path) -> tuple[int, int]:
    """(last complete checkpoint step, last logged train step), 0 when none."""
    latest = run_dir / "checkpoints" / "latest"
    metrics = run_dir / "metrics.jsonl"
    saved = int(latest.read_text()) if latest.exists() else 0
    logged = max((r["step"] for r in read_metrics(metrics)), default=0) if metrics.exists() else 0
    return saved, logged


def _no_process_left(launcher_pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while processes_of_launch(launcher_pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_kill_and_resume_continues_the_exact_loss_curve(ref_tp2, runs_dir, blend_path, tmp_path):
    import psutil

    # Children this test process already had (e.g. multiprocessing's resource tracker, started by an
    # in-process spawn in an earlier test) are not the launches' leftovers.
    earlier_children = {p.pid for p in psutil.Process().children(recursive=True)}
    run_dir = runs_dir / "killed"
    config_path = tmp_path / "killed.json"
    config_path.write_text(json.dumps(config_to_dict(make_config(run_dir, blend_path, "parallel.tensor=2"))))
    log = tmp_path / "train.log"

    # 1. One rank dies (as under the OOM killer) after the step-4 checkpoint: the launcher ends the
    #    other rank and everything the ranks started, and fails with the rank's fate.
    first = _start(config_path, log)
    _wait_for(first, lambda: _progress(run_dir) >= (4, 5), log)
    ranks = [p for p in processes_of_launch(first.pid) if "training.rank" in " ".join(p.cmdline())]
    assert len(ranks) == 2
    next(p for p in ranks if p.environ().get("RANK") == "1").kill()
    assert first.wait(timeout=120) != 0
    assert "SIGKILL" in log.read_text() or "Signal 9" in log.read_text()
    assert _no_process_left(first.pid)
    assert _progress(run_dir)[1] < 16

    # 2. Resume; after the step-8 checkpoint kill the launcher's whole process group with SIGKILL.
    #    The ranks (in their own sessions, as torchrun starts them) notice and end themselves.
    second = _start(config_path, log)
    _wait_for(second, lambda: _progress(run_dir) >= (8, 9), log)
    os.killpg(second.pid, signal.SIGKILL)
    second.wait(timeout=30)
    assert _no_process_left(second.pid)
    saved, logged = _progress(run_dir)
    assert logged < 16 and not (run_dir / "result.json").exists()

    # 3. Resume to the end: the curve is the uninterrupted TP=2 run's, step for step.
    third = _start(config_path, log)
    assert third.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert train_losses(run_dir / "metrics.jsonl") == train_losses(ref_tp2.metrics_path)
    resumes = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl", "resume")]
    assert 4 in resumes and saved in resumes
    assert not [p for p in psutil.Process().children(recursive=True) if p.pid not in earlier_children]


def test_ray_train_workers_run_the_same_training(ref_tp1, runs_dir, blend_path):
    """DP=2 with the distributed optimizer in Ray Train TorchTrainer workers: the TP=1 curve."""
    from training.run import train

    result = train(make_config(runs_dir / "ray_dp2", blend_path, "parallel.data=2", "launch.backend=ray"))
    assert train_losses(result.metrics_path) == pytest.approx(train_losses(ref_tp1.metrics_path), abs=1e-4)
    assert result.checkpoint is not None and result.checkpoint.name == "iter_0000016"


def test_checkpoints_record_their_lineage(ref_tp2, blend_path):
    from training.blend import read_blend

    blend = read_blend(blend_path)
    lineage = json.loads((ref_tp2.checkpoint_dir / "lineage.json").read_text())
    assert lineage["lineage"]["dataset"] == {"name": "fixture", "version": "test-1"}
    assert lineage["lineage"]["blend"] == str(blend.path)
    assert lineage["lineage"]["tokenizer_hash"] == blend.tokenizer_hash
    assert lineage["config"]["parallel"]["tensor"] == 2
    steps = sorted(p.name for p in ref_tp2.checkpoint_dir.glob("iter_*"))
    assert steps == ["iter_0000004", "iter_0000008", "iter_0000012", "iter_0000016"]
    meta = json.loads((ref_tp2.checkpoint / "logos_meta.json").read_text())
    assert meta["step"] == 16 and meta["consumed_samples"] == 64
    assert (ref_tp2.checkpoint_dir / "latest").read_text() == "16"
    assert (ref_tp2.checkpoint_dir / "tokenizer" / "tokenizer.json").is_file()
