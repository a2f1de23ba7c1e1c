"""``train(config) -> TrainResult``: the entry the CLI and the workflow DAG call."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.blend import load_tokenizer, read_blend
from training.checkpoint import CheckpointError, start_checkpoint
from training.config import TrainConfig, validate
from training.continued import check_same_model, prepare_init
from training.trainer import RESULT_FILE


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    steps: int
    final_loss: float | None  # None when no step ran (e.g. the run was already complete)
    valid_loss: dict[str, float]  # per domain, after the last step
    checkpoint: Path | None  # the last checkpoint (an iter_* directory)
    checkpoint_dir: Path
    metrics_path: Path

    @classmethod
    def read(cls, config: TrainConfig) -> TrainResult:
        path = Path(config.run_dir) / RESULT_FILE
        if not path.is_file():
            raise RuntimeError(f"the run finished without writing {path}")
        raw: dict[str, Any] = json.loads(path.read_text())
        return cls(
            run_dir=Path(config.run_dir),
            steps=raw["steps"],
            final_loss=raw["final_loss"],
            valid_loss=raw["valid_loss"],
            checkpoint=Path(raw["checkpoint"]) if raw["checkpoint"] else None,
            checkpoint_dir=config.checkpoint_dir,
            metrics_path=Path(raw["metrics"]),
        )


def preflight(config: TrainConfig) -> None:
    """Fail before starting any rank on what the launcher can check: the blend and its tokenizer, and
    that a checkpoint to resume, load or start from (``init``, imported here if needed) has this run's
    model shape and, for ``init``, the blend's tokenizer."""
    blend = read_blend(config.data.blend)
    load_tokenizer(blend)
    ref = start_checkpoint(config.checkpoint_dir, config.checkpoint.resume, config.checkpoint.load)
    if ref is not None and ref.meta.get("weights_only"):
        raise CheckpointError(f"checkpoint {ref.path} holds weights only (an import, no optimizer state): "
                              f"start from it with init: {{checkpoint: {ref.path.parent}}}")
    if ref is None and config.init_dir is not None:
        ref = prepare_init(config, blend)  # imports init.hf once; checks tokenizer and vocabulary
    if ref is not None:
        check_same_model(ref.meta.get("config", {}).get("model", {}), config.model, f"checkpoint {ref.path}")


def train(config: TrainConfig) -> TrainResult:
    """Run training to ``config.train_steps`` with ``parallel.world_size`` ranks; returns when they finish.

    ``config.launch.backend`` picks local processes or Ray Train workers (``launch.ray_address`` for
    a cluster). A previous result file is removed first so a failed run never reports a stale result.
    """
    validate(config)
    preflight(config)
    result_path = Path(config.run_dir) / RESULT_FILE
    result_path.unlink(missing_ok=True)
    if config.launch.backend == "ray":
        from training.ray_launch import launch_ray

        launch_ray(config)
    else:
        from training.launch import launch_local

        launch_local(config)
    return TrainResult.read(config)
