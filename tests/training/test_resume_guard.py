"""A run directory resumes only on the data it was trained on (a finished run asked again with another
blend used to resume, train no step and exit 0 with a config naming data the model never saw)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.training.helpers import make_config
from training.checkpoint import CheckpointError
from training.run import preflight

pytestmark = pytest.mark.slow  # the reference run (session fixture) trains a model


def _copy_blend(blend_path, out, **changes):
    shutil.copytree(blend_path.parent, out)
    blend = json.loads((out / "blend.json").read_text())
    blend.update(changes)
    (out / "blend.json").write_text(json.dumps(blend))
    return out / "blend.json"


def test_a_run_directory_refuses_another_dataset_version(ref_tp1, blend_path, tmp_path):
    other = _copy_blend(blend_path, tmp_path / "other", dataset={"name": "fixture", "version": "test-2"})
    with pytest.raises(CheckpointError) as raised:
        preflight(make_config(ref_tp1.run_dir, other))
    message = str(raised.value)
    assert "test-1" in message and "test-2" in message and str(ref_tp1.run_dir) in message
    assert len(message.splitlines()) == 1


def test_the_same_data_moved_elsewhere_still_resumes(ref_tp1, blend_path, tmp_path):
    moved = _copy_blend(blend_path, tmp_path / "moved")
    preflight(make_config(ref_tp1.run_dir, moved))  # same dataset, tokenizer and mixture: resumes
    preflight(make_config(ref_tp1.run_dir, blend_path))


def test_a_blend_without_a_dataset_is_compared_by_its_path(ref_tp1, blend_path, tmp_path):
    anonymous = _copy_blend(blend_path, tmp_path / "anonymous", dataset={})
    with pytest.raises(CheckpointError, match="other data"):
        preflight(make_config(ref_tp1.run_dir, anonymous))


def test_a_run_directory_refuses_another_recipe(ref_tp1, blend_path):
    """Learning rate, batch shape or seed changed on resume: one line naming both values and the fix."""
    with pytest.raises(CheckpointError) as raised:
        preflight(make_config(ref_tp1.run_dir, blend_path, "optimizer.lr=0.5", "data.global_batch_size=8"))
    message = str(raised.value)
    assert "optimizer.lr" in message and "0.5" in message and "data.global_batch_size" in message
    assert "another run_dir" in message and len(message.splitlines()) == 1


def test_a_run_directory_resumes_with_more_steps_or_another_layout(ref_tp1, blend_path):
    """What may change on resume: train_steps (extends the run), the parallel layout, the cadences."""
    preflight(make_config(ref_tp1.run_dir, blend_path, f"train_steps={ref_tp1.steps + 4}", "parallel.tensor=2",
                          "checkpoint.interval=7", "logging.interval=3"))
