"""``benchmarks/gpu_check.py`` on CPU: the dry run validates every config without the forbidden
packages, and its resume check (stop at 6, resume to 9) is bit-exact here on the tiny model, with the
distributed optimizer's ``dp_reshardable`` format (whose Adam step counter megatron-core 0.16.1
restores wrongly over torch Adam unless ``training.optimizer_state`` sets it aside) and asynchronous
saves (``latest`` written only when a save is complete)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.training.helpers import REPO

# What the GPU box will not have; the check must not import them on any path.
FORBIDDEN = ("ray", "rdkit", "pymatgen", "gemmi", "deltalake", "polars", "workflows", "biotite", "spglib")


def test_dry_run_validates_the_configs_and_prints_the_plan(tmp_path):
    script = (
        "import sys, json, runpy\n"
        "sys.argv = ['gpu_check.py', '--dry-run', '--work', sys.argv[1]]\n"
        "try:\n"
        "    runpy.run_path('benchmarks/gpu_check.py', run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        # What the real (non-dry) run imports as well, in the driver and in the rank processes.
        "import training.run, training.rank, training.launch, training.hf_import, training.hf_export\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "work")], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    *plan_lines, imported = out.stdout.strip().splitlines()
    assert json.loads(imported) == []
    plan = json.loads("\n".join(plan_lines))["plan"]
    throughput = plan["throughput_sdpa"]
    assert (throughput["model"], throughput["layers"], throughput["precision"]) == ("llama3.2-1b", 16, "bf16")
    assert throughput["train_steps"] == 30 and throughput["seq_length"] == 4096
    assert plan["resume_first"]["stop_at_step"] == 6 and plan["resume_straight"]["train_steps"] == 9
    assert not (tmp_path / "work" / "gpu_check.json").exists()


def test_synthetic_blend_from_a_saved_tokenizer_needs_no_chemistry_stack(tmp_path):
    """A GPU box has PyTorch and transformers but not RDKit or pymatgen, which building the vocabulary
    needs (it did fail there, on an H200): ``--tokenizer`` loads one saved elsewhere, with only ``tokenizers``."""
    from grammar.tokenizer import default_tokenizer

    saved = default_tokenizer().save(tmp_path / "tokenizer")
    script = (
        "import sys, importlib.abc, json\n"
        f"BLOCKED = set({FORBIDDEN!r})\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError(f'{name} is not on the GPU box')\n"
        "sys.meta_path.insert(0, Block())\n"
        "sys.path.insert(0, 'benchmarks')\n"
        "from pathlib import Path\n"
        "import gpu_check\n"
        "blend = gpu_check.write_synthetic_blend(Path(sys.argv[1]), 30_000, tokenizer_dir=Path(sys.argv[2]))\n"
        "print(json.loads(blend.read_text())['tokenizer']['content_hash'])\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "blend"), str(saved)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == default_tokenizer().content_hash


def test_dry_run_rejects_bad_arguments():
    out = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--steps", "3"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--steps (3) must exceed --warmup (5)" in out.stderr


@pytest.mark.slow
def test_resume_check_is_bit_exact_with_dp_reshardable_state_and_async_saves(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    blend = gpu_check.write_synthetic_blend(tmp_path / "blend", tokens=60_000)
    variant = [*gpu_check.RESUME_CPU, "checkpoint.optimizer_format=dp_reshardable", "checkpoint.async_save=true"]
    result = gpu_check.resume_check(tmp_path, blend, variant)
    assert result["stopped_at"] == 6
    assert len(result["straight_losses"]) == 9
    assert result["resumed_losses"] == result["straight_losses"]
    assert result["straight_losses"][-1] < result["straight_losses"][0]  # the synthetic data is learnable
