"""One rank of a run: set up the process (CPU layer, torch.distributed, Megatron's parallel state)
and run the trainer.

``run_rank(config)`` is what every rank runs, whether started by the local launcher
(``python -m training.rank CONFIG.json`` with a torchrun-style environment) or inside a Ray Train
worker (process group already initialised).
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from training import cpu_compat
from training.config import TrainConfig, config_from_dict
from training.model import Runtime
from training.trainer import Trainer

LAUNCHER_PID_ENV = "LOGOS_LAUNCHER_PID"


def init_distributed(config: TrainConfig, runtime: Runtime) -> None:
    from megatron.core import parallel_state, tensor_parallel

    # Ray Train creates the group and selects each worker's GPU itself; torchrun-style ranks do it here.
    if not dist.is_initialized():
        if runtime.cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if runtime.cuda else "gloo")
    if dist.get_world_size() != config.parallel.world_size:
        raise RuntimeError(f"world size {dist.get_world_size()} != parallel.tensor x pipeline x data "
                           f"= {config.parallel.world_size}")
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=config.parallel.tensor,
        pipeline_model_parallel_size=config.parallel.pipeline,
    )
    seed = stage_seed(config.seed, parallel_state.get_pipeline_model_parallel_rank())
    random.seed(seed)
    np.random.seed(seed)
    # CPU initialisation draws from the default generator: the same seed on every TP rank gives every
    # rank the same full weights to split.
    torch.manual_seed(seed)
    # The tensor-parallel stream adds its own TP-rank offset (megatron-core: seed + 2718 + tp_rank).
    tensor_parallel.model_parallel_cuda_manual_seed(seed)


PIPELINE_SEED_STRIDE = 100  # Megatron-LM's ``_set_random_seed``: seed + 100 * pipeline rank


def stage_seed(seed: int, pipeline_rank: int) -> int:
    """The seed of one pipeline stage, as Megatron-LM sets it: ``seed + 100 * pp_rank``.

    Without the offset every stage draws the same initial weights for its first layer, its second
    layer, ... (layer k of stage 1 a copy of layer k of stage 0). Megatron-LM adds ``10 * dp_rank``
    only with ``--data-parallel-random-init`` (off by default, since DDP broadcasts the weights of DP
    rank 0 anyway), so no data-parallel offset here.
    """
    return seed + PIPELINE_SEED_STRIDE * pipeline_rank


def rank_environment(config: TrainConfig) -> dict[str, str]:
    """Environment a rank needs before CUDA starts, set by the launchers (and by ``run_rank`` if absent).

    Tensor parallelism with sequence parallelism needs ``CUDA_DEVICE_MAX_CONNECTIONS=1`` so that its
    communication kernels are scheduled ahead of the compute they overlap with (megatron-core warns
    without it); it is read when the CUDA context is created, hence before any rank touches CUDA.
    Sequence parallelism is on by default whenever TP > 1 and Transformer Engine is present, which the
    launcher cannot see, so TP > 1 without an explicit ``sequence_parallel: false`` gets it.
    """
    if config.parallel.tensor > 1 and config.parallel.sequence_parallel is not False:
        return {"CUDA_DEVICE_MAX_CONNECTIONS": "1"}
    return {}


def run_rank(config: TrainConfig | dict[str, Any]) -> dict[str, Any]:
    """Train on this rank. The caller's process must be one rank of ``parallel.world_size``."""
    if isinstance(config, dict):
        config = config_from_dict(config)
    for key, value in rank_environment(config).items():
        os.environ.setdefault(key, value)
    cpu_compat.activate()
    runtime = Runtime.detect(config)
    init_distributed(config, runtime)
    return Trainer(config, runtime).run()


def _die_with_launcher(launcher_pid: int) -> None:
    """End this rank's whole process group (it, and the checkpoint writer's manager process) as soon
    as the launcher is gone, e.g. killed with SIGKILL: orphaned ranks would otherwise keep training
    and writing into the run directory. A thread, because the main thread may sit in a collective."""

    def watch() -> None:
        while os.getppid() == launcher_pid:
            time.sleep(0.5)
        os.killpg(os.getpgid(0), signal.SIGKILL)

    threading.Thread(target=watch, name="launcher-watchdog", daemon=True).start()


def main() -> int:
    """Entry of a rank started by the local launcher: ``python -m training.rank CONFIG.json``."""
    import sys

    from torch.distributed.elastic.multiprocessing.errors import record

    if LAUNCHER_PID_ENV in os.environ:
        _die_with_launcher(int(os.environ[LAUNCHER_PID_ENV]))
    return record(_main)(sys.argv[1])


def _main(config_path: str) -> int:
    config = config_from_dict(json.loads(Path(config_path).read_text()))
    run_rank(config)
    from megatron.core import parallel_state

    parallel_state.destroy_model_parallel()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":  # the checkpoint writer starts processes: ranks must be importable safely
    raise SystemExit(main())
