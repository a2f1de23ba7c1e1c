"""Continued pretraining (``init``): a run starts at step 0 from imported weights with a fresh optimizer,
on the fixture data tokenized with the base tokenizer extended by the grammar (LOGOS's recipe)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.training.helpers import make_config, run_logos, write_blend
from tests.training.hf_models import hf_logits, make_hf_model

# The tiny HF Llama of hf_models.py in ModelConfig terms (what `init` checks the run's model against).
MODEL = ["model.num_layers=2", "model.max_position_embeddings=131072"]


def _records(metrics: Path) -> list[dict]:
    return [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def setting(tmp_path_factory) -> dict[str, Path]:
    from grammar.hf_extend import ExtendedTokenizer

    out = tmp_path_factory.mktemp("continued")
    llama = make_hf_model("llama", out / "llama")
    blend = write_blend(out / "blend", ExtendedTokenizer.build(llama))
    return {"out": out, "llama": llama, "blend": blend}


@pytest.fixture(scope="module")
def continued(setting):
    """20 steps from ``init: {hf: ...}`` (imported on the fly), TP=2."""
    from training.run import train

    config = make_config(setting["out"] / "run", setting["blend"], *MODEL, "train_steps=20", "checkpoint.interval=20",
                         f"init.hf={setting['llama']}", "parallel.tensor=2")
    return config, train(config)


@pytest.mark.slow
def test_a_continued_run_starts_from_the_imported_weights_and_lowers_the_loss(continued):
    from training.metrics import read_metrics

    config, result = continued
    first = _records(result.metrics_path)[0]
    assert first["kind"] == "init" and first["checkpoint"].startswith(str(Path(config.run_dir) / "init"))
    losses = [r["loss"] for r in read_metrics(result.metrics_path)]
    assert len(losses) == 20 and result.steps == 20
    assert losses[-1] < losses[0] - 0.5, losses  # step 1's loss is the imported model's, before any update
    meta = json.loads((result.checkpoint / "logos_meta.json").read_text())
    blend = json.loads(Path(config.data.blend).read_text())
    assert meta["lineage"]["tokenizer_hash"] == blend["tokenizer"]["content_hash"]


@pytest.mark.slow
def test_init_weights_reach_the_optimizer(setting, extended_import, tmp_path):
    """With a zero learning rate the weights after two steps are still the imported ones: nothing in a
    step writes the random initialisation back. (With bf16 on GPUs the optimizer's fp32 copies are
    what could do that; the trainer refreshes them, which this fp32 CPU run cannot tell apart.)"""
    from training.run import train

    config = make_config(tmp_path / "run", setting["blend"], *MODEL, "train_steps=2", "checkpoint.interval=2",
                         "optimizer.lr=0", "optimizer.min_lr=0", "optimizer.weight_decay=0",
                         f"init.checkpoint={extended_import}")
    result = train(config)
    done = run_logos("export", "hf", str(result.checkpoint_dir), "--out", str(tmp_path / "hf"), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ids = torch.tensor([[5, 17, 300, 1200, 42, 99, 7, 1000, 3, 64, 1201, 12]])
    base = hf_logits(setting["llama"], ids)
    assert torch.allclose(hf_logits(tmp_path / "hf", ids)[..., : base.shape[-1]], base, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_resume_wins_over_init(continued, setting):
    """Run again with more steps: it resumes its own step-20 checkpoint, not the init weights."""
    from training.run import train

    config, _ = continued
    again = make_config(Path(config.run_dir), setting["blend"], *MODEL, "train_steps=22", "checkpoint.interval=20",
                        f"init.hf={setting['llama']}", "parallel.tensor=2")
    result = train(again)
    kinds = [r["kind"] for r in _records(result.metrics_path)]
    assert kinds.count("init") == 1 and kinds.count("resume") == 1 and result.steps == 22


def _train_fails(config) -> str:
    """``train`` refuses in the launcher's preflight: one line, no rank started."""
    from training.errors import TrainingError
    from training.run import train

    with pytest.raises(TrainingError) as error:
        train(config)
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def extended_import(setting) -> Path:
    """The tiny Llama imported with the blend's extended tokenizer (no run)."""
    from training.hf_import import import_hf

    return import_hf(setting["llama"], setting["out"] / "extended_import",
                     tokenizer=Path(setting["blend"]).parent / "tokenizer")


@pytest.mark.slow
def test_a_checkpoint_with_a_smaller_vocabulary_is_refused(setting, tmp_path):
    """An import made with the plain base tokenizer (no grammar tokens) against the extended blend."""
    from training.hf_import import import_hf

    imported = import_hf(setting["llama"], tmp_path / "plain", tokenizer=setting["llama"])
    message = _train_fails(make_config(tmp_path / "run", setting["blend"], *MODEL, f"init.checkpoint={imported}"))
    assert "fewer than" in message and str(imported) in message and not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_a_blend_with_another_tokenizer_is_refused(setting, extended_import, tmp_path):
    """Same base, another extension (no crystal tokens): the checkpoint's vocabulary covers the blend's,
    but the ids do not mean the same tokens."""
    from grammar.hf_extend import ExtendedTokenizer

    other = write_blend(tmp_path / "blend", ExtendedTokenizer.build(setting["llama"], material_tokens=False))
    theirs = json.loads(other.read_text())["tokenizer"]["content_hash"]
    ours = json.loads((extended_import / "iter_0000000" / "logos_meta.json").read_text())["lineage"]["tokenizer_hash"]
    assert theirs != ours
    message = _train_fails(make_config(tmp_path / "run", other, *MODEL, f"init.checkpoint={extended_import}"))
    assert theirs in message and ours in message and str(other) in message


@pytest.mark.slow
def test_a_weights_only_checkpoint_is_not_resumable(setting, extended_import, tmp_path):
    message = _train_fails(make_config(tmp_path / "run", setting["blend"], *MODEL,
                                       f"checkpoint.load={extended_import}"))
    assert "weights only" in message and "init: {checkpoint:" in message


@pytest.mark.slow
def test_another_model_shape_is_refused(setting, extended_import, tmp_path):
    message = _train_fails(make_config(tmp_path / "run", setting["blend"], "model.max_position_embeddings=131072",
                                       f"init.checkpoint={extended_import}"))
    assert "model.num_layers 2 there, 4 here" in message


def test_init_hf_of_another_shape_imports_nothing(setting, tmp_path):
    message = _train_fails(make_config(tmp_path / "run", setting["blend"], "model.max_position_embeddings=131072",
                                       f"init.hf={setting['llama']}"))
    assert "model.num_layers 2 there, 4 here" in message and str(setting["llama"] / "config.json") in message
    assert not (tmp_path / "run" / "init").exists()
