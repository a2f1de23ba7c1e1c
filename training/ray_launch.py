"""Ray paths: the same ``run_rank`` in Ray Train ``TorchTrainer`` workers, and Ray Job submission.

``launch_ray`` joins ``launch.ray_address`` (or ``RAY_ADDRESS``, as inside a Ray Job) or starts a
local Ray for the duration of the run. Ray Train creates the torch process group (gloo on CPU, NCCL
on GPU; placement from the config and ``ray.cluster_resources()``, see ``ray_placement``) and
``run_rank`` builds Megatron's parallel groups on top of it.

``submit_job`` sends ``logos train config.json --ray`` to a cluster's job server with the resolved
config uploaded as the job's working directory; the blend and run directory in the config must be
paths the cluster can see (shared filesystem or object-store mount).
"""

from __future__ import annotations

import json
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.config import TrainConfig, config_to_dict
from training.launch import CONFIG_FILE, LaunchError, write_run_config


def _ray_worker(config: dict[str, Any]) -> None:
    from training.rank import run_rank

    run_rank(config)


@dataclass(frozen=True)
class RayPlacement:
    """How Ray Train places the ranks: what ``ScalingConfig``/``TorchConfig`` get."""

    use_gpu: bool
    resources_per_worker: dict[str, float]
    backend: str  # nccl with GPUs, gloo without

    def scaling_config(self, num_workers: int) -> Any:
        from ray.train import ScalingConfig

        return ScalingConfig(num_workers=num_workers, use_gpu=self.use_gpu,
                             resources_per_worker=dict(self.resources_per_worker))


def ray_placement(config: TrainConfig, cluster_resources: dict[str, float]) -> RayPlacement:
    """Placement from the config and the cluster's resources (``ray.cluster_resources()``).

    Not from the driver's ``torch.cuda.is_available()``: ``logos launch`` drives from a head node that
    usually has no GPU. ``launch.use_gpu`` decides when set; otherwise GPUs are used when the cluster
    has any, and ``precision: bf16`` asks for them. Auto mode with fewer GPUs than ranks is an error
    (set ``launch.use_gpu: true`` to wait for an autoscaler to add them); bf16 without GPUs too.
    """
    world = config.parallel.world_size
    gpus = float(cluster_resources.get("GPU", 0.0))
    requested = config.launch.use_gpu
    use_gpu = requested if requested is not None else (gpus > 0 or config.precision == "bf16")
    if use_gpu and requested is None and gpus < world:
        raise LaunchError(f"parallel.world_size {world} needs {world} GPUs and the Ray cluster has {gpus:g}; "
                          "set launch.use_gpu: true to wait for an autoscaler, or false to train on CPU")
    if not use_gpu and config.precision == "bf16":
        raise LaunchError("precision: bf16 needs GPU workers but launch.use_gpu is false; use precision: fp32")
    cpus = float(config.launch.cpus_per_worker)
    resources = {"CPU": cpus, "GPU": 1.0} if use_gpu else {"CPU": cpus}
    return RayPlacement(use_gpu=use_gpu, resources_per_worker=resources, backend="nccl" if use_gpu else "gloo")


def launch_ray(config: TrainConfig) -> None:
    import os

    import ray
    from ray.train import RunConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from pipeline.ray_runtime import ray_session
    from training.rank import rank_environment

    write_run_config(config)
    world = config.parallel.world_size
    # A local Ray gets at least one logical CPU per rank, so TP2xPP2 can run on a 2-core laptop.
    env = rank_environment(config)  # reaches the workers before Ray Train sets their CUDA device
    with ray_session(config.launch.ray_address, num_cpus=max(os.cpu_count() or 1, world),
                     runtime_env={"env_vars": env} if env else None):
        placement = ray_placement(config, ray.cluster_resources())
        trainer = TorchTrainer(
            train_loop_per_worker=_ray_worker,
            train_loop_config=config_to_dict(config),
            scaling_config=placement.scaling_config(world),
            torch_config=TorchConfig(backend=placement.backend),
            run_config=RunConfig(name=Path(config.run_dir).name or "logos-train",
                                 storage_path=str(Path(config.run_dir).resolve() / "ray_results")),
        )
        try:
            trainer.fit()
        except Exception as exc:  # Ray wraps worker failures in its own error types
            raise LaunchError(f"Ray Train run {config.run_dir} failed: {exc}") from exc


def job_spec(config: TrainConfig, working_dir: Path) -> dict[str, Any]:
    """The Ray Job for ``config``: the resolved config is written into ``working_dir``, uploaded with it."""
    (working_dir / CONFIG_FILE).write_text(json.dumps(config_to_dict(config), indent=1))
    return {
        "entrypoint": f"logos train {shlex.quote(CONFIG_FILE)} --ray",
        "runtime_env": {"working_dir": str(working_dir)},
        "metadata": {"logos_run_dir": str(config.run_dir), "logos_blend": str(config.data.blend)},
    }


def submit_job(config: TrainConfig, address: str, wait: bool = False) -> str:
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address)
    with tempfile.TemporaryDirectory(prefix="logos-job-") as tmp:
        job_id = client.submit_job(**job_spec(config, Path(tmp)))
    if wait:
        import asyncio

        async def follow() -> None:
            async for lines in client.tail_job_logs(job_id):
                print(lines, end="")

        asyncio.run(follow())
        status = client.get_job_status(job_id)
        if status != JobStatus.SUCCEEDED:
            raise LaunchError(f"Ray Job {job_id} ended {status}")
    return job_id
