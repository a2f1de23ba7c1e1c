"""``train(config) -> TrainResult``: the entry the CLI and the workflow DAG call."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.blend import Blend, load_tokenizer, read_blend
from training.checkpoint import CheckpointError, CheckpointRef, find_checkpoint, start_checkpoint
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
    own = find_checkpoint(config.checkpoint_dir) if config.checkpoint.resume else None
    if own is not None:
        check_same_data(own, blend, config.run_dir)
        check_same_recipe(own, config)
    ref = start_checkpoint(config.checkpoint_dir, config.checkpoint.resume, config.checkpoint.load)
    if ref is not None and ref.meta.get("weights_only"):
        raise CheckpointError(f"checkpoint {ref.path} holds weights only (an import, no optimizer state): "
                              f"start from it with init: {{checkpoint: {ref.path.parent}}}")
    if ref is None and config.init_dir is not None:
        ref = prepare_init(config, blend)  # imports init.hf once; checks tokenizer and vocabulary
    if ref is not None:
        check_same_model(ref.meta.get("config", {}).get("model", {}), config.model, f"checkpoint {ref.path}")


def check_same_data(ref: CheckpointRef, blend: Blend, run_dir: str) -> None:
    """A run directory resumes only on the data it was trained on.

    Otherwise a finished run asked again with another blend would resume its last checkpoint, train no
    step and report success, with a config that names data the model never saw. The data is the dataset
    version, tokenizer and train mixture the checkpoint's lineage records (the blend file's path when the
    blend names no dataset), so a blend that was only moved still resumes.
    """
    saved, current = ref.meta.get("lineage") or {}, blend.lineage()
    keys = ["tokenizer_hash", "train"] + (["dataset"] if current.get("dataset") else ["blend"])
    if not current.get("dataset"):
        saved = saved | {"blend": str(Path(saved.get("blend", "")).resolve())}
        current = current | {"blend": str(Path(current["blend"]).resolve())}
    differ = [key for key in keys if saved.get(key) != current.get(key)]
    if differ:
        was = ", ".join(f"{key} {saved.get(key)}" for key in differ)
        now = ", ".join(f"{key} {current.get(key)}" for key in differ)
        raise CheckpointError(f"run_dir {run_dir} holds checkpoint {ref.path} trained on other data ({was}); "
                              f"this config asks for {now}: use another run_dir to train on it, or the run's "
                              "own blend to resume")


# What a resumed run must keep besides its data and model shape: the seeds, the batch and sequence shape
# (together they fix which documents each step reads, see ``training.data``) and the optimizer. Free to
# change: the parallel layout (checkpoints reshard), precision, ``train_steps`` (extends a run), the
# checkpoint and logging cadence, the launcher.
RECIPE_KEYS = ("seed", "data.seed", "data.seq_length", "data.global_batch_size", "optimizer")


def _flat(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        flat |= _flat(value, f"{name}.") if isinstance(value, dict) else {name: value}
    return flat


def check_same_recipe(ref: CheckpointRef, config: TrainConfig) -> None:
    """A run directory resumes only with the recipe it was trained with (``RECIPE_KEYS``); otherwise the
    resumed steps would silently follow another learning-rate schedule or data order than the steps before.
    Checkpoints that predate a key are not held to it."""
    from training.config import config_to_dict

    saved, current = _flat(ref.meta.get("config") or {}), _flat(config_to_dict(config))
    recipe = [key for key in sorted(current) if any(key == k or key.startswith(f"{k}.") for k in RECIPE_KEYS)]
    differ = [key for key in recipe if key in saved and saved[key] != current[key]]
    if differ:
        was = ", ".join(f"{key} {saved[key]}" for key in differ)
        now = ", ".join(f"{key} {current[key]}" for key in differ)
        raise CheckpointError(f"run_dir {config.run_dir} holds checkpoint {ref.path} trained with {was}; this config "
                              f"asks for {now}: use another run_dir to train with it, or the run's own "
                              f"{Path(config.run_dir) / 'config.json'} to resume")


def train(config: TrainConfig) -> TrainResult:
    """Run training to ``config.train_steps`` with ``parallel.world_size`` ranks; returns when they finish.

    ``config.launch.backend`` picks local processes or Ray Train workers (``launch.ray_address`` for
    a cluster). A previous result file is removed first so a failed run never reports a stale result.
    """
    validate(config)
    if config.launch.backend == "local":  # the layout against this machine's devices, before anything else
        import torch

        from training.launch import check_local_devices

        cuda = torch.cuda.is_available()
        check_local_devices(config, cuda, torch.cuda.device_count() if cuda else 0)
    preflight(config)
    result_path = Path(config.run_dir) / RESULT_FILE
    result_path.unlink(missing_ok=True)
    from training.progress import follow_metrics

    with follow_metrics(config.metrics_path, config.train_steps):  # step, loss, tokens/s on the terminal
        if config.launch.backend == "ray":
            from training.ray_launch import launch_ray

            launch_ray(config)
        else:
            from training.launch import launch_local

            launch_local(config)
    return TrainResult.read(config)
