"""Ray paths: the same ``run_rank`` in Ray Train ``TorchTrainer`` workers, and Ray Job submission.

``launch_ray`` joins ``launch.ray_address`` (or ``RAY_ADDRESS``, as inside a Ray Job) or starts a
local Ray for the duration of the run. Ray Train creates the torch process group (gloo on CPU, NCCL
on GPU; placement from the config and ``ray.cluster_resources()``, see ``ray_placement``) and
``run_rank`` builds Megatron's parallel groups on top of it.

``submit_job`` sends ``logos train config.json --ray`` to a cluster's job server with the resolved
config uploaded as the job's working directory; the blend and run directory in the config must be
paths the cluster can see (shared filesystem or object-store mount). The entrypoint is ``sh
logos_job.sh train ...``: the script runs ``python -m workflows.cli`` with the Python that runs the
node's Ray workers (read from the raylet's ``--python_worker_command``), because the job's shell has
the ``PATH`` that ``ray start`` saw, where ``python`` is often not the cluster's interpreter and
``logos`` is often missing. So the cluster needs logos installed in the Python its Ray runs on (every
node; the same checkout or image); ``--runtime-env`` adds to the job's runtime_env (``py_modules``,
``pip``, ``image_uri``, ``env_vars`` such as ``LOGOS_PYTHON`` to name the interpreter). The job
client sends Ray's auth token when one is found (``pipeline.ray_cluster``).
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
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

    if config.launch.ray_address:
        from pipeline.ray_cluster import prepare_join

        prepare_join(config.launch.ray_address)  # a wrong address or missing token: before the run dir is written
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


JOB_SCRIPT = "logos_job.sh"
# Finds the interpreter of this node's Ray workers by walking up from the job's shell to the raylet (the
# job supervisor is one of its workers) and reading its --python_worker_command; LOGOS_PYTHON overrides.
JOB_SCRIPT_TEXT = r"""# logos Ray Job launcher: python -m workflows.cli "$@" with the Python of this node's Ray workers.
python="${LOGOS_PYTHON:-}"
pid=$$
while [ -z "$python" ] && [ -r "/proc/$pid/stat" ] && [ "$pid" -gt 1 ]; do
  python=$(tr '\0' '\n' < "/proc/$pid/cmdline" | sed -n 's/^--python_worker_command=\([^ ]*\).*/\1/p')
  pid=$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f2)
done
exec "${python:-python3}" -m workflows.cli "$@"
"""
FAILED_LOG_LINES = 15


class JobFailed(LaunchError):
    """The job ran and did not succeed (as opposed to one that could not be submitted)."""


def job_spec(config: TrainConfig, working_dir: Path, runtime_env: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Ray Job for ``config``: the resolved config and the launcher script are written into
    ``working_dir``, which is uploaded as the job's working directory; ``runtime_env`` adds to it."""
    extra = dict(runtime_env or {})
    if "working_dir" in extra:
        raise LaunchError("--runtime-env: working_dir is set by logos launch (it carries the config); "
                          "use py_modules for code")
    (working_dir / CONFIG_FILE).write_text(json.dumps(config_to_dict(config), indent=1))
    (working_dir / JOB_SCRIPT).write_text(JOB_SCRIPT_TEXT)
    return {
        "entrypoint": f"sh {JOB_SCRIPT} train {shlex.quote(CONFIG_FILE)} --ray",
        "runtime_env": {"working_dir": str(working_dir), **extra},
        "metadata": {"logos_run_dir": str(config.run_dir), "logos_blend": str(config.data.blend)},
    }


def load_runtime_env(value: str) -> dict[str, Any]:
    """``--runtime-env``: a JSON object, or a JSON/YAML file holding one."""
    import yaml

    path = Path(value)
    try:
        loaded = yaml.safe_load(path.read_text()) if path.is_file() else json.loads(value)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise LaunchError(f"--runtime-env {value!r}: neither a file nor a JSON object ({exc})") from None
    if not isinstance(loaded, dict):
        raise LaunchError(f"--runtime-env {value!r}: expected a mapping like {{\"env_vars\": {{...}}}}")
    return loaded


def job_client(address: str) -> Any:
    """A ``JobSubmissionClient`` that sends Ray's auth token when one is found; one-line errors otherwise."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    from pipeline.ray_cluster import ClusterError, check_reachable, use_token_if_available

    if "://" not in address:  # head:8265 means the dashboard's HTTP address, as Ray's CLI reads it
        address = f"http://{address}"
    use_token_if_available()
    for name in ("ray", "ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk"):
        logging.getLogger(name).setLevel(logging.WARNING)  # not "Uploading package ...", "WebSocket closed ..."
    try:
        check_reachable(address, "the Ray job server (dashboard)")
        return JobSubmissionClient(address)
    except ClusterError as exc:
        raise LaunchError(str(exc)) from None
    except AuthenticationError:
        raise _token_error(address) from None
    except Exception as exc:  # Ray raises ConnectionError, ValueError or RuntimeError here
        raise LaunchError(f"cannot use the Ray job server at {address}: {_first_line(exc)}") from None


def submit_job(config: TrainConfig, address: str, wait: bool = False,
               runtime_env: dict[str, Any] | None = None) -> str:
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobStatus

    client = job_client(address)
    with tempfile.TemporaryDirectory(prefix="logos-job-") as tmp:
        try:
            job_id = client.submit_job(**job_spec(config, Path(tmp), runtime_env))
        except AuthenticationError:
            raise _token_error(address) from None
        except RuntimeError as exc:
            raise LaunchError(f"the Ray job server at {address} refused the job: {_first_line(exc)}") from None
    if not wait:
        return job_id
    import asyncio

    async def follow() -> None:
        async for lines in client.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    try:
        asyncio.run(follow())
    except KeyboardInterrupt:
        print(f"\nstopped following; Ray Job {job_id} keeps running (follow it again with: "
              f"{follow_command(job_id, address)}; stop it with: {follow_command(job_id, address, 'stop')})",
              file=sys.stderr)
        raise
    info = client.get_job_info(job_id)
    if info.status != JobStatus.SUCCEEDED:
        tail = client.get_job_logs(job_id).splitlines()[-FAILED_LOG_LINES:]
        print(f"--- last {len(tail)} lines of Ray Job {job_id}'s log ---", *tail, sep="\n", file=sys.stderr)
        reason = _first_line(info.message or "no message").split(", last available logs")[0]
        raise JobFailed(f"Ray Job {job_id} ended {info.status.value}: {reason}")
    return job_id


def _token_error(address: str) -> LaunchError:
    import os

    from pipeline.ray_cluster import AUTH_MODE_ENV, WHERE_THE_TOKEN_GOES, auth_token

    mode = os.environ.get(AUTH_MODE_ENV, "").lower()
    found = (f"{AUTH_MODE_ENV}={mode} here (unset it)" if mode and mode != "token"
             else "the auth token found here was rejected" if auth_token() else "none was found")
    return LaunchError(f"the Ray cluster at {address} requires an auth token and {found}: {WHERE_THE_TOKEN_GOES}")


def follow_command(job_id: str, address: str, action: str = "logs --follow") -> str:
    """How to follow (or stop) the job with Ray's own CLI, which sends the token only in token mode."""
    import os

    prefix = "RAY_AUTH_MODE=token " if os.environ.get("RAY_AUTH_MODE", "").lower() == "token" else ""
    return f"{prefix}ray job {action} {job_id} --address {shlex.quote(address)}"


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0].rstrip(":,") if text else type(value).__name__
