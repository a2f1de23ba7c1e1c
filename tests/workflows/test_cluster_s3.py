"""The demo workflow on a 3-node Ray cluster with an S3 home (issue 11, item 6).

The cluster is ``ray.cluster_utils.Cluster``: a head and two worker nodes on this machine, one CPU each.
Ingest starts one converter actor per CPU the cluster offers (3), each asking 0.75 CPU, so no node can hold
two: the converters run on all three nodes, and the Hamilton stages (``executor: ray``) run as Ray tasks.
The home is a moto S3 server on loopback (``home: s3://...``, endpoint and credentials from the
environment). The reference is the suite's single-process local run of the same demo (the ``demo``
fixture): the cluster run must register the same dataset versions (dedup, split, mix, export) and export
byte-identical ``.bin/.idx`` files.

Split and export run their partitions as Ray tasks on the cluster (``split.config.workers``,
``export.workers``; execution settings, so the versions must still be the local run's). Worker processes are
killed (SIGKILL) mid-stage, and the result must be unchanged (the same versions and bytes prove it):

- an ingest converter, while ingest runs: Ray Data restarts the actor and retries its chunk, whose Parquet
  part has a deterministic name;
- the worker running split's first assignments partition (``write_partition_assignments``: it writes its
  own Parquet file into the Delta table folder before the driver's one commit) and the worker running
  export's first partition (``export_partition``): Ray retries the task (``pipeline.partition_tasks``).
  A partition of the demo takes milliseconds, so the test hook of ``pipeline.partition_tasks`` holds each
  one's first attempt until it is killed (its marker file gives the pid), and the process killed is found
  by its Ray title, ``ray::<task function>``, which must be that pid: a renamed task function fails the
  import below, a task no longer run through ``partition_tasks`` fails the kill.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import psutil
import pytest
import s3fs
from moto.server import ThreadedMotoServer

from pipeline.export_megatron import export_partition
from pipeline.partition_tasks import FAULT_DIR_ENV, FAULT_ENV
from pipeline.split import write_partition_assignments
from pipeline.versions import DatasetStore

REPO = Path(__file__).resolve().parents[2]
BUCKET = "logos-cluster-home"
DATASET_STAGES = ("dedup", "split", "mix", "export")
CONVERTER = "ChunkConverter"  # the ingest actor class (pipeline.ingest): its worker's process title names it
HELD = (write_partition_assignments.__name__, export_partition.__name__)  # partition 0's first attempt of each


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the cluster's nodes, started next, inherit it
    s3fs.S3FileSystem.clear_instance_cache()
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket=BUCKET)
    try:
        yield env
    finally:
        server.stop()
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def cluster(s3_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[int], Path]]:
    """The cluster's address, its raylets' pids (their children are this cluster's workers, no one else's),
    and the folder where its workers mark the partitions they hold (the fault hook is in their environment)."""
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    markers = tmp_path_factory.mktemp("held")
    hook = {FAULT_ENV: ",".join(f"{function}:0:hold" for function in HELD), FAULT_DIR_ENV: str(markers)}
    saved = {k: os.environ.get(k) for k in hook}
    os.environ.update(hook)  # the nodes started next, and so their workers, inherit it
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                          "object_store_memory": 150 * 1024 * 1024})
    try:
        for _ in range(2):
            nodes.add_node(num_cpus=1, object_store_memory=150 * 1024 * 1024)
        nodes.wait_for_nodes()
        raylets = [n.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid for n in nodes.list_all_nodes()]
        yield nodes.address, raylets, markers
    finally:
        nodes.shutdown()
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def cluster_workers(raylets: list[int]) -> Iterator[tuple[psutil.Process, str]]:
    """This cluster's worker processes and their titles (``ray::<task or actor>``)."""
    for raylet in raylets:
        try:
            workers = psutil.Process(raylet).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for process in workers:
            try:
                title = " ".join(process.cmdline())
            except psutil.Error:
                continue
            if title.startswith("ray::"):
                yield process, title


def kill_mid_stage(raylets: list[int], markers: Path, stop: threading.Event, killed: dict[str, int],
                   errors: list[str]) -> None:
    """SIGKILL, once each: the first ingest converter worker seen, and the worker of each held partition
    (once its marker names its pid, which must be the pid of the worker titled ``ray::<function>``)."""
    while not stop.is_set() and len(killed) < 1 + len(HELD):
        for process, title in cluster_workers(raylets):
            if CONVERTER not in killed and CONVERTER in title:
                os.kill(process.pid, signal.SIGKILL)
                killed[CONVERTER] = process.pid
        for function in HELD:
            marker = markers / f"{function}-0.held"
            if function in killed or not marker.exists():
                continue
            pid = int(marker.read_text())
            titled = [p.pid for p, title in cluster_workers(raylets) if title.split()[0] == f"ray::{function}"]
            if pid not in titled:
                errors.append(f"{function}: the held pid {pid} is not among workers titled ray::{function}: {titled}")
                return
            os.kill(pid, signal.SIGKILL)
            killed[function] = pid
        time.sleep(0.05)


@pytest.mark.slow
def test_cluster_run_on_s3_matches_the_local_run(demo, cluster, s3_env, tmp_path):
    _, reference = demo
    address, raylets, markers = cluster
    home = f"s3://{BUCKET}/home"
    env = {**os.environ, "PYTHONPATH": str(REPO), "LOGOS_CACHE": str(tmp_path / "cache")}
    stop, killed, errors = threading.Event(), {}, []
    watcher = threading.Thread(target=kill_mid_stage, args=(raylets, markers, stop, killed, errors), daemon=True)
    watcher.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "workflows.cli", "run", "demo", "--set", f"home={home}", "--set", "targets=[export]",
             "--set", "executor=ray", "--set", "split.config.workers=2", "--set", "export.workers=2",
             "--ray-address", address], cwd=tmp_path, env=env, capture_output=True,
            text=True, timeout=900)
    finally:
        stop.set()
        watcher.join()
    assert not errors, errors
    assert done.returncode == 0, done.stderr[-4000:]
    assert set(killed) == {CONVERTER, *HELD}, f"killed only {killed}"
    run = json.loads(next((tmp_path / "cache").glob("homes/*/runs/*/run.json")).read_text())
    outputs = {stage: run["stages"][stage]["output"] for stage in DATASET_STAGES}
    assert all(o["store_root"] == f"{home}/datasets" for o in outputs.values())
    local, remote = DatasetStore(reference.results["export"].store_root), DatasetStore(f"{home}/datasets")
    made = remote.find("demo", outputs["dedup"]["version"])
    expected = local.find("demo", reference.results["dedup"].version)
    # A version id hashes the code version too: both runs must come from the same commit to compare ids.
    assert made.code_version == expected.code_version, "the code changed between the reference run and this one"
    assert [i.checksum for i in made.inputs] == [i.checksum for i in expected.inputs]  # the same shard bytes
    assert {s: o["version"] for s, o in outputs.items()} == {s: reference.results[s].version for s in DATASET_STAGES}
    # The exported files, fetched back from S3, are the local run's bytes.
    export = remote.manifest(f"{outputs['export']['name']}@{outputs['export']['version']}")
    binaries = sorted(p for p in export.files if p.endswith((".bin", ".idx")))
    assert binaries and export.files == local.manifest(export.ref).files
    fetched = remote.local_copy(remote.files_path(export.name, export.version))
    for relative in binaries:
        name = relative.split(f"/{export.version}/", 1)[1]
        assert (fetched / name).read_bytes() == local.local_copy(relative).read_bytes(), name
