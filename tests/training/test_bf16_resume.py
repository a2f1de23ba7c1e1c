"""A bf16 resume on CPU (``tests/training/bf16_resume_probe.py``, its own process): bf16 weights, fp32
main parameters of the distributed optimizer over torch AdamW, several padded gradient buckets as on a
GPU, an asynchronous save followed at once by more steps. The resumed state must equal the state at
the save bit for bit and the resumed steps the uninterrupted ones.

Before ``training.optimizer_state.unpadded_world_offsets`` the ``fully_reshardable`` format (the default)
failed here: megatron-core 0.16.1 cut every parameter past the first bucket out of the gathered state
at an offset shifted by the stripped bucket padding, so main weights and moments were restored from
their neighbours' (the bf16 weights, saved separately, were right: the first resumed loss matched).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.training.helpers import REPO


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> dict:
    out = subprocess.run([sys.executable, "tests/training/bf16_resume_probe.py", str(tmp_path_factory.mktemp("bf16"))],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("optimizer_format", ["fully_reshardable", "dp_reshardable"])
def test_bf16_resume_from_an_async_save_is_bit_exact_with_padded_buckets(probe, optimizer_format):
    r = probe[optimizer_format]
    # What the run exercised: bf16 weights over fp32 main parameters, several buckets with end padding,
    # and steps that changed the state while the save was in flight.
    assert (r["weights_dtype"], r["main_params_dtype"]) == ("bfloat16", "float32")
    assert r["buckets"] > 1 and r["bucket_end_padding"] > 0
    assert r["moved_after_save"]
    assert r["loaded_step"] == 3
    assert r["loaded_equal_at_save"] == {key: True for key in
                                         ("main_params", "exp_avg", "exp_avg_sq", "adam_steps", "bf16_weights")}
    assert r["resumed_losses"] == r["continued_losses"]
    assert all(r["state_equal_after"].values())
