"""FLOPs per token against PyTorch's FLOP counter, MFU, and the metrics file."""

from __future__ import annotations

import json

import pytest
import torch

from training.metrics import MetricsWriter, mfu, peak_tflops_for, read_metrics, training_flops_per_token
from training.presets import model_preset


def test_flops_per_token_match_torch_flop_counter_on_a_llama():
    """Count a forward+backward of an equally shaped transformers Llama with ``FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import LlamaConfig, LlamaForCausalLM

    model = model_preset("tiny", num_layers=2)
    vocab, seq, batch = 1024, 32, 2  # vocab already a multiple of 128: no padding difference
    hf = LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab, hidden_size=model.hidden_size, intermediate_size=model.ffn_hidden_size,
        num_hidden_layers=model.num_layers, num_attention_heads=model.num_attention_heads,
        num_key_value_heads=model.num_query_groups, head_dim=model.head_dim, tie_word_embeddings=True,
        attn_implementation="eager",
    ))
    ids = torch.randint(0, vocab, (batch, seq))
    with FlopCounterMode(display=False) as counter:
        hf(ids, labels=ids).loss.backward()
    counted = counter.get_total_flops() / (batch * seq)
    # Eager attention computes the full score matrix, so compare with the non-causal count.
    assert training_flops_per_token(model, seq, vocab, causal=False) == pytest.approx(counted, rel=1e-6)
    assert training_flops_per_token(model, seq, vocab) < counted


def test_mfu_and_peak_lookup():
    assert peak_tflops_for("NVIDIA H100 80GB HBM3") == 989.4
    assert peak_tflops_for("NVIDIA H200") == 989.4
    assert peak_tflops_for("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops_for("cpu") is None
    assert mfu(1000.0, 1e9, 2, None) is None
    assert mfu(1e5, 6e9, 8, 989.4) == pytest.approx(1e5 * 6e9 / (8 * 989.4e12))


def test_metrics_file_keeps_the_last_record_per_step(tmp_path):
    writer = MetricsWriter(tmp_path / "m.jsonl")
    for step, loss in [(1, 5.0), (2, 4.0), (3, 3.5), (2, 4.0), (3, 3.0)]:  # a resume re-ran steps 2-3
        writer.write({"kind": "train", "step": step, "loss": loss, "mfu": float("nan")})
    writer.write({"kind": "valid", "step": 3, "valid_loss": {"molecule": 2.0}})
    records = read_metrics(tmp_path / "m.jsonl")
    assert [(r["step"], r["loss"]) for r in records] == [(1, 5.0), (2, 4.0), (3, 3.0)]
    assert read_metrics(tmp_path / "m.jsonl", "valid")[0]["valid_loss"] == {"molecule": 2.0}
    assert all(json.loads(line)["mfu"] is None for line in (tmp_path / "m.jsonl").read_text().splitlines()[:5])


def test_throughput_is_averaged_over_the_logging_interval():
    from training.metrics import IntervalThroughput

    meter = IntervalThroughput(tokens_per_step=1000)
    for seconds in (1.0, 1.0, 2.0):  # the logged (third) step alone would say 500 tokens/s
        meter.add(seconds)
    assert meter.take() == (750.0, 4.0 / 3, 3)
    meter.add(0.5)
    assert meter.take() == (2000.0, 0.5, 1)  # the next interval starts empty
    with pytest.raises(ValueError, match="no timed step"):
        meter.take()
