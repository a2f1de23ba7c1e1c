"""Start the ranks of a run on this machine, torchrun-style, and wait for them.

The ranks are started by PyTorch's elastic agent (what ``torchrun --standalone`` runs): each rank is
``python -m training.trainer <run_dir>/config.json`` in its own process group with the usual
RANK/WORLD_SIZE/MASTER_* environment. When any rank fails, or the launcher is interrupted, the agent
signals every rank's whole process group, which also ends helpers the ranks started (the checkpoint
writer's multiprocessing manager).
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

from training.config import TrainConfig, config_to_dict
from training.errors import TrainingError
from training.trainer import LAUNCHER_PID_ENV

CONFIG_FILE = "config.json"


class LaunchError(TrainingError, RuntimeError):
    pass


def write_run_config(config: TrainConfig) -> Path:
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CONFIG_FILE
    path.write_text(json.dumps(config_to_dict(config), indent=1))
    return path


def launch_local(config: TrainConfig) -> None:
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config_path = write_run_config(config)
    # Ranks inherit this and end themselves if this process disappears (see trainer._die_with_launcher).
    os.environ[LAUNCHER_PID_ENV] = str(os.getpid())
    launch = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=config.parallel.world_size,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint=f"localhost:{config.launch.master_port}",
        max_restarts=0,
        monitor_interval=0.2,
        logs_specs=DefaultLogsSpecs(log_dir=str(Path(config.run_dir) / "logs"), tee=Std.ALL),
        shutdown_timeout=5,
    )
    try:
        elastic_launch(launch, entrypoint=sys.executable)("-m", "training.trainer", str(config_path))
    except ChildFailedError as exc:
        raise LaunchError(f"training run {config.run_dir} failed:\n{exc.format_msg()}") from None
