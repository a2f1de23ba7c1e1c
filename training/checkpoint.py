"""Distributed checkpoints (megatron-core ``dist_checkpointing``, torch_dist format).

Layout of a checkpoint directory::

    <dir>/iter_0000010/          the sharded checkpoint of step 10, plus logos_meta.json
    <dir>/latest                 the last complete step (written after every rank finished saving)
    <dir>/lineage.json           blend, dataset version, tokenizer hash and config of the run
    <dir>/tokenizer/             the grammar tokenizer the run trained with

Tensors are saved in model space (the distributed optimizer's "fully_reshardable" format), so a
checkpoint loads into any TP/PP/DP layout.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.errors import TrainingError

META_FILE = "logos_meta.json"
LATEST_FILE = "latest"
LINEAGE_FILE = "lineage.json"
TOKENIZER_DIR = "tokenizer"  # a copy of the run's tokenizer, so checkpoints export on their own
# How model and optimizer state map to checkpoint tensors; recorded in the checkpoint too.
SHARDED_METADATA = {
    "distrib_optim_sharding_type": "fully_reshardable",
    "singleton_local_shards": False,
    "chained_optim_avoid_prefix": True,
}


class CheckpointError(TrainingError, RuntimeError):
    pass


@dataclass(frozen=True)
class CheckpointRef:
    path: Path  # the iter_* directory
    step: int
    meta: dict[str, Any]


def step_dir(root: Path, step: int) -> Path:
    return root / f"iter_{step:07d}"


def _rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def _barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def find_checkpoint(path: str | Path) -> CheckpointRef | None:
    """A checkpoint from an ``iter_*`` directory, or the latest one of a checkpoint root (None if none)."""
    path = Path(path)
    if (path / META_FILE).is_file():
        meta = json.loads((path / META_FILE).read_text())
        return CheckpointRef(path, int(meta["step"]), meta)
    latest = path / LATEST_FILE
    if not latest.is_file():
        return None
    step = int(latest.read_text().strip())
    target = step_dir(path, step)
    if not (target / META_FILE).is_file():
        raise CheckpointError(f"{latest} names step {step} but {target / META_FILE} is missing")
    return CheckpointRef(target, step, json.loads((target / META_FILE).read_text()))


def start_checkpoint(checkpoint_dir: Path, resume: bool, load: str | None) -> CheckpointRef | None:
    """Where a run starts: its own latest checkpoint when resuming, else ``checkpoint.load`` if set."""
    ref = find_checkpoint(checkpoint_dir) if resume else None
    if ref is None and load:
        ref = find_checkpoint(load)
        if ref is None:
            raise CheckpointError(f"checkpoint.load: no checkpoint in {load}")
    return ref


def save_checkpoint(root: Path, step: int, model: Any, optimizer: Any, scheduler: Any, meta: dict[str, Any],
                    tokenizer_dir: Path | None = None) -> Path:
    """Collective: every rank calls it. ``model`` is the unwrapped (non-DDP) module of this stage."""
    from megatron.core import dist_checkpointing

    target = step_dir(root, step)
    if _rank() == 0:
        if target.exists():  # left by a run killed while saving this step (never the one resumed from)
            shutil.rmtree(target)
        target.mkdir(parents=True)
        if not (root / LINEAGE_FILE).exists():
            lineage = {k: meta[k] for k in ("lineage", "config") if k in meta}
            _write_atomically(root / LINEAGE_FILE, json.dumps(lineage, indent=1))
        if tokenizer_dir is not None and not (root / TOKENIZER_DIR).exists():
            shutil.copytree(tokenizer_dir, root / f".{TOKENIZER_DIR}.tmp", dirs_exist_ok=True)
            os.replace(root / f".{TOKENIZER_DIR}.tmp", root / TOKENIZER_DIR)
    _barrier()
    model_sd = model.sharded_state_dict(metadata=SHARDED_METADATA)
    state = {
        "model": model_sd,
        "optimizer": optimizer.sharded_state_dict(model_sd, is_loading=False, metadata=SHARDED_METADATA),
        "scheduler": scheduler.state_dict(),
        "step": step,
    }
    dist_checkpointing.save(state, str(target), content_metadata=SHARDED_METADATA)
    _barrier()
    if _rank() == 0:
        _write_atomically(target / META_FILE, json.dumps(meta | {"step": step}, indent=1))
        _write_atomically(root / LATEST_FILE, str(step))
    _barrier()
    return target


def load_checkpoint(ref: CheckpointRef, model: Any, optimizer: Any | None = None, scheduler: Any | None = None) -> int:
    """Load into this rank's (possibly differently parallelised) model; optimizer/scheduler if given."""
    from megatron.core import dist_checkpointing

    from training.optimizer_state import load_optimizer_state, materialize_optimizer_state

    model_sd = model.sharded_state_dict(metadata=SHARDED_METADATA)
    request: dict[str, Any] = {"model": model_sd}
    if optimizer is not None:
        materialize_optimizer_state(optimizer)
        request["optimizer"] = optimizer.sharded_state_dict(model_sd, is_loading=True, metadata=SHARDED_METADATA)
    state = dist_checkpointing.load(request, str(ref.path))
    model.load_state_dict(state["model"])
    if optimizer is not None:
        load_optimizer_state(optimizer, state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    return int(state["step"])
