"""One error style: every user error of the ``logos`` command is one line on stderr naming the thing (and
the fix), no traceback, exit 2 for usage errors and 1 for failures (``workflows/errors.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHEMBL = str(REPO / "tests/data/chembl/chembl_30_chemreps_100.txt")

# (arguments, exit code, words the line must contain). Each runs in an empty folder with no AWS credentials.
CASES = {
    "missing input file": (["ingest", "chembl", "missing.txt", "--out", "shards"], 2, ["missing.txt"]),
    # beside a real input, a pattern matching nothing must not vanish without a word
    "pattern matching no file": (["ingest", "chembl", CHEMBL, "nomatch-*.txt", "--out", "shards"], 2,
                                 ["nomatch-*.txt", "matches no file"]),
    "invalid -o key, before Ray": (["ingest", "chembl", CHEMBL, "--out", "shards", "-o", "colour=red"], 2,
                                   ["colour", "known keys", "molecule_key"]),
    "missing dataset in report": (["report", "nosuch", "--out", "report"], 2, ["nosuch", "have: none"]),
    "missing dataset in a stage": (["split", "nosuch"], 2, ["nosuch", "no dataset"]),
    "missing train config": (["train", "missing.yaml"], 2, ["missing.yaml", "tiny_cpu.yaml"]),
    "missing workflow": (["run", "nosuch"], 2, ["nosuch", "demo"]),
    "S3 without credentials": (["ingest", "chembl", "s3://logos-test-no-bucket/a.txt", "--out", "shards"], 1,
                               ["credentials", "AWS_ACCESS_KEY_ID"]),
    # `full.yaml` (as the README names it) is the bundled workflow, whose sources are on S3
    "S3 workflow dry run without credentials": (["run", "full.yaml", "--dry-run"], 1, ["credentials", "AWS_PROFILE"]),
    "unreachable Ray cluster": (["ingest", "chembl", CHEMBL, "--out", "shards", "--ray-address", "127.0.0.1:1"], 2,
                                ["127.0.0.1:1"]),
    # A GPU config on this CPU-only run (CUDA hidden): refused before any rank starts or any data is read.
    "GPU layout without GPUs": (["train", str(REPO / "training/configs/llama3.2_1b_gpu.yaml"),
                                 "--set", "data.blend=missing/blend.json"], 2, ["bf16", "GPU", "fp32"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_user_error_is_one_line(case, tmp_path):
    args, code, words = CASES[case]
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_") and key != "RAY_ADDRESS"}
    env |= {"PYTHONPATH": str(REPO), "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "CUDA_VISIBLE_DEVICES": "", "LOGOS_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "workflows.cli", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert all(word in lines[0] for word in words), lines[0]
    assert not (tmp_path / "shards").exists()  # refused before anything was written


def test_an_error_raised_in_a_ray_task_is_its_own_line_and_code():
    """With ``executor: ray`` a stage's error reaches ``logos run`` inside Ray's wrappers, built here as Ray
    builds them (``as_instanceof_cause``): the node's task, and the task that took its result as an input.
    Their message is the remote traceback; the line must be the stage's own, with its exit code (a
    partition whose worker kept dying is a failure: 1)."""
    from ray.exceptions import RayTaskError

    from pipeline.partition_tasks import PartitionFailed
    from workflows.errors import FAILURE, user_error

    line = "split: partition 0 (1,471 rows, part-0.parquet row 0) failed on 4 attempts, its worker died each time"
    node = RayTaskError("dataset_stage", f"Traceback (most recent call last):\n  ...\nPartitionFailed: {line}",
                        PartitionFailed(line)).as_instanceof_cause()
    result = RayTaskError("build_result", "At least one of the input arguments ...\nTraceback ...", node)
    assert user_error(result.as_instanceof_cause()) == (line, FAILURE)
