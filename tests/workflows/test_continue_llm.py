"""The continue_llm workflow (LOGOS's recipe) end to end on a tiny local Llama: the demo's data stages
tokenized with the base tokenizer extended by the grammar, training from the imported weights, and an
HF export of the base architecture with the extended tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training.hf_models import make_hf_model
from workflows.config import load_workflow

# The tiny Llama of tests/training/hf_models.py in the train section's terms, on CPU, a few steps.
TINY = ["train.model.preset=tiny", "train.model.num_layers=2", "train.model.max_position_embeddings=131072",
        "train.precision=fp32", "train.train_steps=10", "train.data.seq_length=128", "train.data.micro_batch_size=4",
        "train.data.global_batch_size=8", "train.checkpoint.interval=10", "train.logging.interval=1",
        "train.logging.eval_interval=0", "train.optimizer.warmup_steps=2", "train.optimizer.lr=3e-3",
        "train.optimizer.min_lr=3e-4", "targets=[hf_model]"]


def test_continue_llm_config_loads():
    config = load_workflow("continue_llm").config
    assert config.tokenizer.kind == "extended" and config.train["init"]["hf"] == config.tokenizer.base
    assert config.train["model"] == {"preset": "1b"}


@pytest.mark.slow
def test_continue_llm_runs_end_to_end(tmp_path):
    from grammar.tokenizer import load_tokenizer
    from workflows.runner import run_workflow

    base = make_hf_model("llama", tmp_path / "llama")
    outcome = run_workflow("continue_llm", [f"home={tmp_path / 'home'}", f"tokenizer.base={base}",
                                            f"train.init.hf={base}", *TINY])
    assert outcome.record.status == "succeeded"
    trained, exported = outcome.results["trained"], outcome.results["export"]
    records = [json.loads(line) for line in Path(trained.metrics_path).read_text().splitlines()]
    assert records[0]["kind"] == "init"
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert trained.steps == 10 and losses[-1] < losses[0]
    blend = json.loads(exported.blend_path().read_text())
    assert blend["tokenizer"]["kind"] == "extended"
    model_dir = Path(outcome.results["hf_model"].path)
    config = json.loads((model_dir / "config.json").read_text())
    tokenizer = load_tokenizer(model_dir)
    assert config["architectures"] == ["LlamaForCausalLM"] and config["vocab_size"] == tokenizer.vocab_size
    assert tokenizer.content_hash == blend["tokenizer"]["content_hash"]
