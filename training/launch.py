"""Start the ranks of a run on this machine, torchrun-style, and wait for them.

The ranks are started by PyTorch's elastic agent (what ``torchrun --standalone`` runs): each rank is
``python -m training.rank <run_dir>/config.json`` in its own process group with the usual
RANK/WORLD_SIZE/MASTER_* environment. When any rank fails, or the launcher is interrupted, the agent
signals the process groups of the ranks still running; afterwards the launcher kills whatever else
its ranks started (the checkpoint writer's multiprocessing manager outlives a killed rank). If the
launcher itself is killed, each rank notices and ends its own process group.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.console import verbose
from training.config import TrainConfig, config_to_dict
from training.errors import TrainingError
from training.rank import LAUNCHER_PID_ENV, rank_environment

CONFIG_FILE = "config.json"
LAUNCH_ID_ENV = "LOGOS_LAUNCH_ID"


class LaunchError(TrainingError, RuntimeError):
    pass


def write_run_config(config: TrainConfig) -> Path:
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CONFIG_FILE
    path.write_text(json.dumps(config_to_dict(config), indent=1))
    return path


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def kill_launch_processes(launch_id: str) -> list[int]:
    """SIGKILL every process that carries this launch's id in its environment (ranks and whatever
    they started, also when reparented). The elastic agent only signals the process groups of ranks
    still running; a rank that was killed leaves its helpers (e.g. the checkpoint writer's manager)."""
    import psutil

    killed = []
    for process in psutil.process_iter():
        try:
            if process.pid != os.getpid() and process.environ().get(LAUNCH_ID_ENV) == launch_id:
                process.kill()
                killed.append(process.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return killed


def check_local_devices(config: TrainConfig, cuda_available: bool, device_count: int) -> None:
    """Fail before starting any rank when this machine cannot host the run's ranks.

    With CUDA every local rank takes one GPU (``LOCAL_RANK``), so ``parallel.world_size`` must not
    exceed the visible GPUs (else "invalid device ordinal" in rank k); ``precision: bf16`` needs GPUs.
    """
    world = config.parallel.world_size
    if cuda_available and device_count < world:
        raise LaunchError(f"parallel.world_size {world} (tensor x pipeline x data) needs {world} GPUs on this "
                          f"machine; {device_count} visible (torch.cuda.device_count()); CUDA_VISIBLE_DEVICES= "
                          "trains on CPU instead")
    if not cuda_available and config.precision == "bf16":
        raise LaunchError("precision: bf16 needs a CUDA GPU per rank and this machine has none; "
                          "use precision: fp32 or auto to train on CPU")


def rank_fates(exc: Any) -> str:
    """What happened to each failed rank, for the error's first (and on the console only) line: e.g. 'rank 1
    exited with SIGKILL (killed: out of memory?)' or 'rank 0 exited with code 1'."""
    fates = []
    for rank, failure in sorted(exc.failures.items()):
        if failure.exitcode is not None and failure.exitcode < 0:
            name = failure.signal_name()
            hint = " (killed: out of memory?)" if name == "SIGKILL" else ""
            fates.append(f"rank {rank} exited with {name}{hint}")
        else:
            fates.append(f"rank {rank} exited with code {failure.exitcode}")
    return "; ".join(fates) or "a rank failed"


def launch_local(config: TrainConfig) -> None:
    import torch
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    cuda = torch.cuda.is_available()
    check_local_devices(config, cuda, torch.cuda.device_count() if cuda else 0)
    config_path = write_run_config(config)
    launch_id = str(uuid.uuid4())
    # ``shutdown_timeout`` (seconds the agent waits for ranks after a failure) is newer than torch 2.11,
    # which GPU images still carry; older versions keep their default.
    newer = {"shutdown_timeout": 5} if "shutdown_timeout" in inspect.signature(LaunchConfig).parameters else {}
    launch = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=config.parallel.world_size,
        run_id=launch_id,
        rdzv_backend="c10d",
        rdzv_endpoint=f"localhost:{config.launch.master_port}",
        max_restarts=0,
        monitor_interval=0.2,
        # The ranks' output stays in <run_dir>/logs; on the console only with ``logos -v`` (progress comes
        # from metrics.jsonl: training.progress).
        logs_specs=DefaultLogsSpecs(log_dir=str(Path(config.run_dir) / "logs"), redirects=Std.ALL,
                                    tee=Std.ALL if verbose() else Std.NONE),
        **newer,
    )
    # Ranks inherit both: the launcher pid to end themselves if this process disappears (see
    # rank._die_with_launcher), the launch id so that the sweep below finds all they started.
    with _environment(**{LAUNCHER_PID_ENV: str(os.getpid()), LAUNCH_ID_ENV: launch_id}, **rank_environment(config)):
        try:
            elastic_launch(launch, entrypoint=sys.executable)("-m", "training.rank", str(config_path))
        except ChildFailedError as exc:
            raise LaunchError(f"training run {config.run_dir} failed: {rank_fates(exc)}\n{exc.format_msg()}") from None
        finally:
            kill_launch_processes(launch_id)
