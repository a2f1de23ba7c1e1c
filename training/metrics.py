"""Training FLOPs, MFU and the metrics file (JSON lines, one object per event)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from training.presets import ModelConfig

# Dense bf16 tensor-core peak per device (vendor datasheets, without sparsity: half the "with
# sparsity" figure NVIDIA prints). Longest matching name wins, so "H200 NVL" (NVIDIA H200 datasheet:
# NVL 1,671 TFLOPS with sparsity -> 835.5 dense; SXM 1,979 -> 989.4) is not taken for the SXM part.
PEAK_BF16_TFLOPS = {
    "H200 NVL": 835.5,
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 80GB HBM3": 989.4,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 989.4,
    "GH200": 989.4,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 125.0,
}


def training_flops_per_token(model: ModelConfig, seq_length: int, vocab_size: int, causal: bool = True) -> float:
    """Matmul FLOPs to train on one token: 3x the forward (forward + two backward matmuls).

    Counts the projections, the SwiGLU MLP, the output layer over the padded vocabulary, and
    attention (scores and weighted values); with ``causal`` only the half of the score matrix that
    is not masked counts, as in MFU reports that do not credit masked work. Norms, softmax and
    elementwise ops are negligible.
    """
    h, layers = model.hidden_size, model.num_layers
    q_dim, kv_dim = model.num_attention_heads * model.head_dim, model.num_query_groups * model.head_dim
    projections = h * (q_dim + 2 * kv_dim) + q_dim * h
    mlp = 3 * h * model.ffn_hidden_size
    attention = 2 * q_dim * seq_length * (0.5 if causal else 1.0)  # QK^T and AV
    forward = 2 * (layers * (projections + mlp + attention) + h * model.padded_vocab_size(vocab_size))
    return 3 * forward


def peak_tflops_for(device_name: str) -> float | None:
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key in device_name:
            return PEAK_BF16_TFLOPS[key]
    return None


def mfu(tokens_per_s: float, flops_per_token: float, devices: int, peak_tflops: float | None) -> float | None:
    if not peak_tflops or devices <= 0:
        return None
    return tokens_per_s * flops_per_token / (devices * peak_tflops * 1e12)


class IntervalThroughput:
    """Throughput over the steps since the last report (the logging interval), not the logged step alone:
    one slow or fast step (a checkpoint flush, a data-loader hiccup) must not stand for the interval."""

    def __init__(self, tokens_per_step: int) -> None:
        self.tokens_per_step = tokens_per_step
        self.seconds, self.steps = 0.0, 0

    def add(self, seconds: float) -> None:
        self.seconds += seconds
        self.steps += 1

    def take(self) -> tuple[float, float, int]:
        """(tokens/s, mean step time in s, steps) of the interval, and start the next one."""
        if self.steps == 0 or self.seconds <= 0:
            raise ValueError("IntervalThroughput.take: no timed step since the last report")
        result = (self.tokens_per_step * self.steps / self.seconds, self.seconds / self.steps, self.steps)
        self.seconds, self.steps = 0.0, 0
        return result


class MetricsWriter:
    """Appends JSON lines; a resumed run appends too, so readers keep the last line per step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(clean) + "\n")


def read_metrics(path: str | Path, kind: str = "train") -> list[dict[str, Any]]:
    """The metrics of one kind, one record per step (the last written wins, as after a resume)."""
    by_step: dict[int, dict[str, Any]] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            if record.get("kind") == kind:
                by_step[record["step"]] = record
    return [by_step[s] for s in sorted(by_step)]
