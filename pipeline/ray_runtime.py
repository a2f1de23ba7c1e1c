"""Starting (or joining) Ray once, the same way for every stage.

Joining goes through ``pipeline.ray_cluster.prepare_join`` (address reachable, token auth switched on
when the cluster needs it, one-line ``ClusterError`` otherwise). A local Ray is watched by
``pipeline.ray_reaper`` so that a driver killed with SIGKILL leaves none of its Ray processes behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None,
                runtime_env: dict | None = None) -> Iterator[None]:
    """Use the running Ray, join ``address``, or start a local one; shut down only what we started.

    Local Ray is started lean (no dashboard, small object store) because it shares a laptop-sized
    machine with the work; on a cluster, ``address`` (or ``RAY_ADDRESS``) points at the head node.
    """
    import ray

    from pipeline.console import ray_logging_level, ray_runtime_env

    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        from pipeline.ray_cluster import prepare_join

        prepare_join(address)
        ray.init(address=address, logging_level=ray_logging_level(), log_to_driver=False,
                 runtime_env=ray_runtime_env(runtime_env))
        try:
            yield
        finally:
            ray.shutdown()
        return
    reaper = _start_reaper()
    try:
        ray.init(
            # "local": a new instance, always. Without it ray.init joins whatever cluster /tmp/ray names (a
            # `ray start` or a test's cluster on this machine) and then refuses num_cpus.
            address="local",
            num_cpus=num_cpus or os.cpu_count(),
            include_dashboard=False,
            object_store_memory=512 * 1024 * 1024,
            logging_level=ray_logging_level(),
            log_to_driver=False,
            runtime_env=runtime_env,  # local workers inherit the quiet environment (pipeline.console)
        )
        reaper.stdin.write(ray._private.worker._global_node.get_session_dir_path() + "\n")
        reaper.stdin.flush()
        try:
            yield
        finally:
            ray.shutdown()
            reaper.stdin.write("stop\n")
    finally:
        reaper.stdin.close()
        reaper.wait()


def _start_reaper() -> subprocess.Popen:
    """The watcher that stops this local Ray's processes if this process dies (see ``pipeline.ray_reaper``).

    Its own session, so a signal to the driver's process group does not reach it; stdin is the pipe whose
    end of input tells it the driver is gone.
    """
    return subprocess.Popen([sys.executable, "-m", "pipeline.ray_reaper", str(os.getpid())], stdin=subprocess.PIPE,
                            text=True, start_new_session=True, env=_reaper_env())


def _repo_root() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parents[1])


def _reaper_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_repo_root(), env.get("PYTHONPATH")) if p)
    return env
