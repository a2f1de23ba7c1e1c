"""logos against a stock Ray 2.60 cluster started with ``ray start`` (issue 15): token auth, the job's
Python, one-line errors, and no Ray processes left behind by a killed driver.

The cluster is a real head (``ray start --head``, token auth on, dashboard on a free loopback port) and
one worker node (``ray start --address``), everything on 127.0.0.1. Ray turns 127.0.0.1 into the
machine's outward address unless multi-node clustering is "disabled"
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), and with it disabled ``ray start --address`` refuses to
start a worker node; so the worker's ``ray start`` runs with that one check switched back on
(``WORKER_START``). Both run with ``PATH=/usr/bin:/bin``, as a ``ray start`` outside the virtual
environment would, so the job must find the cluster's Python itself. The clients (``logos``) get the
token only through ``RAY_AUTH_TOKEN_PATH`` and no ``RAY_AUTH_MODE``.

The test stops exactly the processes it started: those holding files open in the cluster's session
directory (``pipeline.ray_reaper.session_processes``).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.training.helpers import REPO

START = "import sys; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; sys.exit(main())"
WORKER_START = (
    "import sys, types; import ray._private.ray_constants as constants; import ray.scripts.scripts as scripts; "
    "scripts.ray_constants = types.SimpleNamespace(**{**vars(constants), 'ENABLE_RAY_CLUSTER': True}); "
    "sys.argv[0] = 'ray'; sys.exit(scripts.main())"
)
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
TRAIN_SETTINGS = ["train_steps=3", "data.seq_length=64", "data.micro_batch_size=2", "data.global_batch_size=4",
                  "checkpoint.interval=3", "logging.eval_interval=3", "logging.eval_iters=1"]


def free_port() -> int:
    """A free port below the kernel's ephemeral range (32768-60999 by default) and above Ray's worker ports
    (10002-19999): a port the OS hands out to any process's ``bind(0)`` could be taken by another Ray on this
    machine between this check and our ``ray start`` (seen: the head's agent failed with EADDRINUSE)."""
    for _ in range(200):
        port = random.randint(20000, 32767)
        try:
            with socket.socket() as s:
                s.bind(("", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port in 20000-32767")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any Ray settings (the caller's token, address or auth mode)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return {**env, **extra}


def logos(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workflows.cli", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=timeout)


def _get_json(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.token_path = root / "token"
        self.token_path.write_text(secrets.token_hex(32))
        # Ray's unix socket paths must stay under ~107 characters; pytest's tmp paths can be long.
        short = len(str(root)) < 40
        self.temp_dir = root / "r" if short else Path(tempfile.mkdtemp(prefix="lr", dir="/tmp"))
        self.own_temp_dir = not short
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.gcs_port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.starters: list[subprocess.Popen] = []

    def env(self) -> dict[str, str]:
        return clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_path), PATH="/usr/bin:/bin",
                         **LOOPBACK)

    def _start(self, code: str, args: list[str], log: str) -> None:
        with open(self.root / log, "w") as out:
            self.starters.append(subprocess.Popen([sys.executable, "-c", code, "start", "--block", *args],
                                                  env=self.env(), stdout=out, stderr=subprocess.STDOUT,
                                                  start_new_session=True))

    def start(self) -> None:
        self._start(START, ["--head", "--port", str(self.gcs_port), "--num-cpus", "2", "--temp-dir", str(self.temp_dir),
                            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dashboard_port),
                            "--ray-client-server-port", str(free_port()),
                            "--dashboard-agent-listen-port", str(free_port()), "--disable-usage-stats"], "head.log")
        self._wait_for_nodes(1)
        self._start(WORKER_START, ["--address", self.address, "--num-cpus", "1",
                                   "--dashboard-agent-listen-port", str(free_port())], "worker.log")
        self._wait_for_nodes(2)

    def _wait_for_nodes(self, count: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        token = self.token_path.read_text()
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.starters):
                break
            try:
                nodes = _get_json(f"{self.dashboard}/api/v0/nodes", token)["data"]["result"]["result"]
                if sum(node["state"] == "ALIVE" for node in nodes) >= count:
                    return
            except OSError:
                pass
            time.sleep(1)
        logs = "\n".join((self.root / name).read_text()[-2000:] for name in ("head.log", "worker.log")
                         if (self.root / name).exists())
        raise RuntimeError(f"the Ray cluster did not get {count} nodes:\n{logs}")

    def session_dir(self) -> str | None:
        sessions = sorted(self.temp_dir.glob("session_2*"))
        return str(sessions[-1]) if sessions else None

    def stop(self) -> None:
        """SIGTERM to the two ``ray start --block`` processes and every process of this cluster's session (found
        by their open files in its session directory), SIGKILL to what is left after a few seconds: a busy head
        would otherwise drain for up to 30 s."""
        from pipeline.ray_reaper import session_processes, stop_session

        for starter in self.starters:
            starter.terminate()
        session = self.session_dir()
        if session:
            stop_session(session)
            assert session_processes(session) == []
        for starter in self.starters:
            try:
                starter.wait(timeout=5)
            except subprocess.TimeoutExpired:
                starter.kill()
                starter.wait()
        if self.own_temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    running = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        running.start()
        yield running
    finally:
        running.stop()


def client_env(cluster: Cluster, home: Path, **extra: str) -> dict[str, str]:
    """A user's shell: the token where Ray's CLI looks for it, no RAY_AUTH_MODE, an empty home."""
    home.mkdir(parents=True, exist_ok=True)
    return clean_env(HOME=str(home), RAY_AUTH_TOKEN_PATH=str(cluster.token_path), **LOOPBACK, **extra)


def assert_one_line_error(done: subprocess.CompletedProcess, *phrases: str) -> None:
    """A non-zero exit, no traceback, and the error as the last line of stderr."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(("error: ", "logos run: ", "logos ingest: ")), done.stderr
    for phrase in phrases:
        assert phrase in last, done.stderr


@pytest.mark.slow
def test_workflow_and_training_launch_on_a_token_auth_cluster(cluster, tmp_path):
    env = client_env(cluster, tmp_path / "user")
    home = tmp_path / "home"
    ran = logos("run", "demo", "--set", "targets=[export]", "--set", f"home={home}", "--ray-address",
                cluster.address, env=env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    record = json.loads(next((home / "runs").glob("*/run.json")).read_text())
    assert record["status"] == "succeeded"
    blend = next((home / "datasets").glob("demo/files/*/blend.json"))

    settings = [arg for setting in TRAIN_SETTINGS for arg in ("--set", setting)]
    launched = logos("launch", "training/configs/tiny_cpu.yaml", "--address", cluster.dashboard, "--wait",
                     "--set", f"data.blend={blend}", "--set", f"run_dir={tmp_path / 'run'}", *settings, env=env)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    assert "Running entrypoint" in launched.stdout and "sh logos_job.sh train config.json --ray" in launched.stdout
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if m.get("kind") == "train"] == [1, 2, 3]
    assert (tmp_path / "run" / "checkpoints" / "iter_0000003").is_dir()


@pytest.mark.slow
def test_missing_token_is_one_line_for_launch_and_run(cluster, tmp_path):
    env = clean_env(HOME=str(tmp_path), **LOOPBACK)  # no token anywhere
    launched = logos("launch", "training/configs/tiny_cpu.yaml", "--address", cluster.dashboard, env=env)
    assert launched.returncode == 2
    assert_one_line_error(launched, "requires an auth token and none was found", "~/.ray/auth_token",
                          "RAY_AUTH_TOKEN_PATH")
    ran = logos("run", "demo", "--set", f"home={tmp_path / 'home'}", "--ray-address", cluster.address, env=env)
    assert ran.returncode == 2
    assert_one_line_error(ran, f"the Ray cluster at {cluster.address} requires an auth token", "~/.ray/auth_token")
    wrong = logos("run", "demo", "--set", f"home={tmp_path / 'home'}", "--ray-address", cluster.address,
                  env={**env, "RAY_AUTH_TOKEN": secrets.token_hex(32)})
    assert wrong.returncode == 2
    assert_one_line_error(wrong, "rejected the auth token found here")
    assert not (tmp_path / "home").exists()  # nothing written


@pytest.mark.slow
def test_failed_job_prints_its_log_tail_and_reason(cluster, tmp_path):
    missing = tmp_path / "nowhere" / "blend.json"  # the job's `logos train` refuses it on the cluster
    launched = logos("launch", "training/configs/tiny_cpu.yaml", "--address", cluster.dashboard, "--wait",
                     "--set", f"data.blend={missing}", env=client_env(cluster, tmp_path / "user"))
    assert launched.returncode == 1
    assert "lines of Ray Job" in launched.stderr and f"blend file {missing} does not exist" in launched.stderr
    assert_one_line_error(launched, "ended FAILED: Job entrypoint command failed with exit code 2")


@pytest.mark.slow
def test_launch_without_wait_prints_the_job_and_how_to_follow_it(cluster, tmp_path):
    missing = tmp_path / "nowhere" / "blend.json"  # fails on the cluster; the submission itself succeeds
    launched = logos("launch", "training/configs/tiny_cpu.yaml", "--address", cluster.dashboard,
                     "--set", f"data.blend={missing}", env=client_env(cluster, tmp_path / "user"))
    assert launched.returncode == 0, launched.stderr
    job_id = launched.stdout.strip()
    assert job_id.startswith("raysubmit_")
    assert (f"follow it with: RAY_AUTH_MODE=token ray job logs --follow {job_id} --address {cluster.dashboard}"
            in launched.stderr)


def test_wrong_address_is_one_line(tmp_path):
    nobody = f"127.0.0.1:{free_port()}"
    env = clean_env(HOME=str(tmp_path))
    launched = logos("launch", "training/configs/tiny_cpu.yaml", "--address", f"http://{nobody}", env=env)
    assert launched.returncode == 2
    assert_one_line_error(launched, f"cannot reach the Ray job server (dashboard) at http://{nobody}")
    ran = logos("run", "demo", "--set", f"home={tmp_path / 'home'}", "--ray-address", nobody, env=env)
    assert ran.returncode == 2
    assert_one_line_error(ran, f"cannot reach the Ray cluster (GCS) at {nobody}")
    trained = logos("train", "training/configs/tiny_cpu.yaml", "--ray", "--ray-address", nobody,
                    "--set", f"run_dir={tmp_path / 'run'}", env=env)
    assert trained.returncode == 2
    assert_one_line_error(trained, f"cannot reach the Ray cluster (GCS) at {nobody}")
    ingested = logos("ingest", "chembl", "workflows/demo_data/chembl", "--out", str(tmp_path / "shards"),
                     "--ray-address", nobody, env=env)
    assert ingested.returncode == 2
    assert_one_line_error(ingested, f"cannot reach the Ray cluster (GCS) at {nobody}")
    assert not (tmp_path / "run").exists() and not (tmp_path / "shards").exists()
    client = logos("run", "demo", "--set", f"home={tmp_path / 'home'}", "--ray-address", f"ray://{nobody}", env=env)
    assert client.returncode == 2
    assert_one_line_error(client, "Ray Client (ray://) cannot run logos's Ray Data stages", "127.0.0.1:6379")
    assert not (tmp_path / "home").exists()


@pytest.mark.slow
def test_killed_driver_leaves_no_ray_processes(tmp_path):
    """A driver with a local Ray (``ray_session``) killed with SIGKILL: its Ray processes are gone soon after.
    Without the reaper the raylet's dashboard and runtime-env agents outlived such a driver."""
    from pipeline.ray_reaper import session_processes

    driver = subprocess.Popen([sys.executable, "-c", KILLED_DRIVER], stdout=subprocess.PIPE, text=True, cwd=REPO,
                              env=clean_env(HOME=str(tmp_path)))
    session = driver.stdout.readline().strip()
    assert session and len(session_processes(session, exclude=driver.pid)) >= 4  # GCS, raylet, agents, worker
    driver.kill()
    driver.wait()
    deadline = time.monotonic() + 30
    while session_processes(session) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert session_processes(session) == []


KILLED_DRIVER = """
import time, ray
from pipeline.ray_runtime import ray_session
with ray_session(num_cpus=1):
    ray.get(ray.remote(lambda: 1).remote())
    print(ray._private.worker._global_node.get_session_dir_path(), flush=True)
    time.sleep(600)
"""
