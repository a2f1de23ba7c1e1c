"""``benchmarks/gpu_resume_digest.py``'s report: which item of which step departs, and what that means
(its runs take minutes; here its comparison of per-step digests, on records shaped as its trainer writes them)."""

from __future__ import annotations

import sys

from tests.training.helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
try:
    from gpu_resume_digest import STATE_KEYS, compare
finally:
    sys.path.pop(0)


def _record(step: int, **changed) -> dict:
    record = {"step": step, "adam_steps": [float(step - 1)], "scheduler_steps": step - 1, "batch": f"b{step}",
              "forward_only_loss": 9.0 - step / 10, "loss": 9.0 - step / 10}
    for key in STATE_KEYS:
        record[key], record[f"{key}_per_tensor"] = f"{key}{step}", [f"{key}{step}t{i}" for i in range(3)]
    record.update(changed)
    return record


def test_equal_runs_are_bit_exact():
    runs = [_record(s) for s in range(1, 10)]
    report = compare(runs, [_record(s) for s in range(1, 10)])
    assert report["first_differing_step"] is None and report["verdict"].startswith("bit-exact")


def test_a_state_tensor_that_differs_is_named_with_its_index():
    straight = [_record(s) for s in range(1, 10)]
    resumed = [_record(s) for s in range(1, 7)] + [
        _record(7, main_params="other", main_params_per_tensor=["main_params7t0", "other", "main_params7t2"]),
        *[_record(s, loss=0.0) for s in (8, 9)]]
    report = compare(straight, resumed)
    assert report["first_differing_step"] == 7
    assert report["steps"]["7"] == {"differs": ["main_params"], "differing_tensors": {"main_params": [1]}}
    assert report["verdict"] == "state not restored at step 7: ['main_params']"


def test_equal_state_with_another_loss_points_at_the_kernels():
    straight = [_record(s) for s in range(1, 10)]
    resumed = [_record(s) for s in range(1, 7)] + [_record(s, forward_only_loss=1.0, loss=1.0) for s in (7, 8, 9)]
    report = compare(straight, resumed)
    assert report["first_differing_step"] == 7 and "depend on the process's history" in report["verdict"]
