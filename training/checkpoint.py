"""Distributed checkpoints (megatron-core ``dist_checkpointing``, torch_dist format).

Layout of a checkpoint directory::

    <dir>/iter_0000010/          the sharded checkpoint of step 10, plus logos_meta.json
    <dir>/latest                 the last complete step (written after every rank finished saving)
    <dir>/lineage.json           blend, dataset version, tokenizer hash and config of the run
    <dir>/tokenizer/             the grammar tokenizer the run trained with

Model tensors are always saved in model space, so weights load into any TP/PP/DP layout. The
distributed optimizer's state is saved in one of megatron-core's two formats
(``checkpoint.optimizer_format``):

- ``fully_reshardable`` (default): model space, loads into any TP/PP/DP layout. Each TP x PP shard's
  optimizer state is gathered (over gloo, into host memory) on its data-parallel rank 0 only — the
  "memory-efficient" variant — not on every DP rank.
- ``dp_reshardable``: each DP rank writes its own slice of the optimizer buffers, with no gather at all
  (Megatron-LM's default); loads into any DP size but only the same TP and PP.

Writes are spread over the data-parallel ranks (``FullyParallelSaveStrategyWrapper``) and, with
``checkpoint.async_save``, happen in a background process while training goes on; ``latest`` names a
step only once every rank's write of it has finished.
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
OPTIMIZER_FORMATS = ("fully_reshardable", "dp_reshardable")


def sharded_metadata(optimizer_format: str = "fully_reshardable") -> dict[str, Any]:
    """The sharded-state-dict metadata for one optimizer format (see the module docstring)."""
    if optimizer_format not in OPTIMIZER_FORMATS:
        raise CheckpointError(f"checkpoint.optimizer_format must be one of {', '.join(OPTIMIZER_FORMATS)}, "
                              f"not {optimizer_format!r}")
    metadata = dict(SHARDED_METADATA, distrib_optim_sharding_type=optimizer_format)
    if optimizer_format == "fully_reshardable":
        # Gather on DP rank 0 over gloo instead of an all-gather of the full state onto every DP rank.
        metadata["distrib_optim_fully_reshardable_mem_efficient"] = True
    return metadata


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


class CheckpointSaver:
    """Writes checkpoints of one run: parallel over data-parallel ranks, optionally asynchronous.

    Collective: every rank makes one and calls ``save``/``poll``/``wait`` at the same points.
    ``wait()`` must run before the process ends (the trainer calls it after the last step).
    """

    def __init__(self, optimizer_format: str = "fully_reshardable", async_save: bool = False) -> None:
        self.metadata = sharded_metadata(optimizer_format)
        self.async_save = async_save
        self._strategy: Any = None
        self._queue: Any = None

    def _save_strategy(self) -> Any:
        if self._strategy is None:
            from megatron.core import parallel_state
            from megatron.core.dist_checkpointing.serialization import get_default_save_sharded_strategy
            from megatron.core.dist_checkpointing.strategies.fully_parallel import FullyParallelSaveStrategyWrapper

            group = (parallel_state.get_data_parallel_group(with_context_parallel=True)
                     if parallel_state.model_parallel_is_initialized() else None)
            self._strategy = FullyParallelSaveStrategyWrapper(get_default_save_sharded_strategy(), group,
                                                              do_cache_distribution=True)
        return self._strategy

    def save(self, root: Path, step: int, model: Any, optimizer: Any, scheduler: Any, meta: dict[str, Any],
             tokenizer_dir: Path | None = None) -> Path:
        """Start (async) or do the save of ``step``; ``model`` is the unwrapped (non-DDP) module of this stage."""
        from megatron.core import dist_checkpointing

        self.wait()  # one save in flight at a time: its memory and its ``latest`` come first
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
        from training.optimizer_state import unpadded_world_offsets

        model_sd = model.sharded_state_dict(metadata=self.metadata)
        with unpadded_world_offsets(optimizer):
            optimizer_sd = optimizer.sharded_state_dict(model_sd, is_loading=False, metadata=self.metadata)
        state = {"model": model_sd, "optimizer": optimizer_sd, "scheduler": scheduler.state_dict(), "step": step}

        def mark_complete() -> None:  # collective, after every rank's tensors are written
            _barrier()
            if _rank() == 0:
                _write_atomically(target / META_FILE, json.dumps(meta | {"step": step}, indent=1))
                _write_atomically(root / LATEST_FILE, str(step))
            _barrier()

        request = dist_checkpointing.save(state, str(target), sharded_strategy=self._save_strategy(),
                                          async_sharded_save=self.async_save, content_metadata=self.metadata)
        if request is None:
            mark_complete()
        else:
            from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue

            request.finalize_fns.append(mark_complete)
            if self._queue is None:
                self._queue = AsyncCallsQueue()
            self._queue.schedule_async_request(request)
        return target

    def poll(self) -> None:
        """Finish saves whose writes are done (collective; cheap when none is in flight)."""
        if self._queue is not None:
            self._queue.maybe_finalize_async_calls(blocking=False)

    def wait(self) -> None:
        """Block until every save in flight is written and marked complete (collective)."""
        if self._queue is not None:
            self._queue.maybe_finalize_async_calls(blocking=True)


def save_checkpoint(root: Path, step: int, model: Any, optimizer: Any, scheduler: Any, meta: dict[str, Any],
                    tokenizer_dir: Path | None = None, optimizer_format: str = "fully_reshardable") -> Path:
    """Collective, synchronous save: every rank calls it. ``model`` is the unwrapped (non-DDP) module."""
    return CheckpointSaver(optimizer_format).save(root, step, model, optimizer, scheduler, meta, tokenizer_dir)


def saved_metadata(ref: CheckpointRef) -> dict[str, Any]:
    """The sharded-state-dict metadata a checkpoint was written with (older ones: the default)."""
    from megatron.core import dist_checkpointing

    return dist_checkpointing.load_content_metadata(str(ref.path)) or dict(SHARDED_METADATA)


def _check_optimizer_layout(ref: CheckpointRef, metadata: dict[str, Any]) -> None:
    """dp_reshardable optimizer state only loads at the TP and PP it was written with: one clear line."""
    from megatron.core import parallel_state

    if metadata.get("distrib_optim_sharding_type") != "dp_reshardable":
        return
    saved = ref.meta.get("config", {}).get("parallel", {})
    here = {"tensor": parallel_state.get_tensor_model_parallel_world_size(),
            "pipeline": parallel_state.get_pipeline_model_parallel_world_size()}
    if any(saved.get(k, v) != v for k, v in here.items()):
        raise CheckpointError(
            f"{ref.path}: optimizer state saved as dp_reshardable at TP={saved.get('tensor')} "
            f"PP={saved.get('pipeline')} cannot load at TP={here['tensor']} PP={here['pipeline']}; save it with "
            "checkpoint.optimizer_format: fully_reshardable to change TP/PP")


def load_checkpoint(ref: CheckpointRef, model: Any, optimizer: Any | None = None, scheduler: Any | None = None) -> int:
    """Load into this rank's (possibly differently parallelised) model; optimizer/scheduler if given."""
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.validation import StrictHandling

    from training.optimizer_state import load_optimizer_state, materialize_optimizer_state, unpadded_world_offsets

    metadata = saved_metadata(ref)
    model_sd = model.sharded_state_dict(metadata=metadata)
    request: dict[str, Any] = {"model": model_sd}
    if optimizer is not None:
        _check_optimizer_layout(ref, metadata)
        materialize_optimizer_state(optimizer)
        with unpadded_world_offsets(optimizer):
            request["optimizer"] = optimizer.sharded_state_dict(model_sd, is_loading=True, metadata=metadata)
    # Transformer Engine modules carry an ``_extra_state`` (FP8 scaling metadata) that megatron's local
    # modules do not: a checkpoint written without TE has none to give a TE model, and the other way
    # round the checkpoint's entries are simply not asked for. An ``_extra_state`` the checkpoint lacks
    # is dropped from the request (the module keeps its fresh one); any other lacking tensor is an error.
    # (megatron calls what the request has and the checkpoint lacks "unexpected".)
    state, _, lacking = dist_checkpointing.load(request, str(ref.path), strict=StrictHandling.RETURN_UNEXPECTED)
    lacking = sorted(k for k in lacking if not _is_extra_state(k))
    if lacking:
        raise CheckpointError(f"{ref.path} lacks {len(lacking)} tensor(s) this model needs, e.g. {lacking[:3]}")
    # Into the innermost module: megatron's wrappers (Float16Module for bf16, DDP) delegate to it with the
    # same keys, but Float16Module returns None instead of the missing/unexpected keys.
    inner = model
    while isinstance(getattr(inner, "module", None), torch.nn.Module):
        inner = inner.module
    result = inner.load_state_dict(state["model"], strict=False)
    wrong = [k for k in (*result.missing_keys, *result.unexpected_keys) if not _is_extra_state(k)]
    if wrong:
        raise CheckpointError(f"{ref.path}: model keys do not match: {wrong[:5]}")
    if optimizer is not None:
        load_optimizer_state(optimizer, state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    return int(state["step"])


def _is_extra_state(key: str) -> bool:
    return key.split("/", 1)[0].rsplit(".", 1)[-1] == "_extra_state"
