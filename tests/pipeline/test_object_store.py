"""The dataset store on object storage (issue 11, item 4): a moto S3 server on loopback as the store and as
the ingest output. The reference is the same work done on local disk: the same inputs and config must give
the same version ids and byte-identical exported files wherever they are stored; a run killed before its
manifest leaves no version; bad inputs on S3 fail with one line and register nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs
from moto.server import ThreadedMotoServer

from pipeline.datasets import dedup_dataset, export_megatron_dataset, mix_dataset, split_dataset
from pipeline.ingest import IngestConfig, run_ingest
from pipeline.versions import DatasetStore
from workflows.cli import main

REPO = Path(__file__).resolve().parents[2]
BUCKET = "logos-store-test"
CHEMREPS = REPO / "tests/data/chembl/chembl_30_chemreps_100.txt"


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """A moto S3 server with one bucket; the AWS environment points every client (s3fs, delta-rs, polars,
    Ray workers started after this) at it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    s3fs.S3FileSystem.clear_instance_cache()  # fsspec caches filesystems; this one must see the env
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def ingested(s3: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The ChEMBL sample ingested twice by the real engine: to a local folder, and by ``logos ingest`` to S3."""
    local = tmp_path_factory.mktemp("ingest") / "chembl"
    run_ingest(IngestConfig(source="chembl", inputs=[str(CHEMREPS)], out=str(local), workers=1))
    remote = f"s3://{BUCKET}/ingest/chembl"
    assert main(["ingest", "chembl", str(CHEMREPS), "--out", remote, "--workers", "1"]) == 0
    return local, remote


def test_s3_ingest_feeds_every_stage_with_the_local_versions_and_bytes(ingested, tmp_path):
    local_shards, remote_shards = ingested
    local, remote = DatasetStore(tmp_path / "datasets"), DatasetStore(f"s3://{BUCKET}/datasets")
    versions = {}
    for store, shards in ((local, str(local_shards)), (remote, remote_shards)):
        dedup = dedup_dataset(store, [shards], "chembl", near=None).manifest
        split = split_dataset(store, dedup.ref, "chembl").manifest
        mixed = mix_dataset(store, split.ref, "chembl").manifest
        export = export_megatron_dataset(store, mixed.ref, "chembl").manifest
        versions[store.local] = [m.version for m in (dedup, split, mixed, export)], export
    (local_versions, local_export), (remote_versions, remote_export) = versions[True], versions[False]
    # A URI input counts by its bytes: shards written to S3 by another ingest run are the same input.
    assert remote_versions == local_versions
    assert remote.names() == ["chembl"] and [m.version for m in remote.versions("chembl")] == local_versions
    assert remote.read(remote.manifest("chembl")).equals(local.read(local.manifest("chembl")))
    # The exported files: the same names and checksums, and the bytes fetched back from S3 are the local ones.
    assert remote_export.files == local_export.files and any(p.endswith(".bin") for p in remote_export.files)
    fetched = remote.local_copy(remote.files_path("chembl", remote_export.version))
    for relative in remote_export.files:
        name = relative.split(f"/{remote_export.version}/", 1)[1]
        assert (fetched / name).read_bytes() == (local.local_copy(relative)).read_bytes(), name
    assert remote.tokenizer_dir(local_export.tokenizer_hash) is not None  # later stages find the tokenizer


KILLED_RUN = """
import sys
from pipeline.datasets import dedup_dataset
from pipeline.versions import DatasetStore
dedup_dataset(DatasetStore(sys.argv[1]), [sys.argv[2]], "killed", near=None)
"""


def test_a_run_killed_before_its_manifest_leaves_no_version_on_s3(ingested):
    _, shards = ingested
    store = DatasetStore(f"s3://{BUCKET}/killed-store")
    env = {**os.environ, "PYTHONPATH": str(REPO), "LOGOS_PAUSE_BEFORE_MANIFEST": "120"}
    process = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(store.root), shards], env=env,
                               stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:  # the data is written; the manifest is not
            if "pausing" in line:
                break
        assert store.exists("killed/tables/records/_delta_log")  # the Delta commit happened
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=60)
    assert store.versions("killed") == [] and "killed" not in store.names()
    finished = dedup_dataset(store, [shards], "killed", near=None)
    assert not finished.reused and [m.version for m in store.versions("killed")] == [finished.manifest.version]


def _dedup_error(capsys, store: str, *inputs: str) -> tuple[int, str]:
    code = main(["dedup", *inputs, "--name", "bad", "--store", store])
    return code, capsys.readouterr().err


def test_bad_s3_inputs_are_one_line_errors_and_register_nothing(s3, ingested, capsys):
    """Each bad input comes after good shards (so nothing is refused for lack of input): a wrong path,
    bucket, pattern or layout is a usage error (exit 2), bytes that are not Parquet a failure (exit 1)."""
    _, good = ingested
    store = f"s3://{BUCKET}/bad-inputs"
    client = boto3.client("s3", endpoint_url=s3)
    foreign = pa.table({"smiles": ["CCO"], "label": [1]})  # a real Parquet file, not tokenized shards
    sink = pa.BufferOutputStream()
    pq.write_table(foreign, sink)
    client.put_object(Bucket=BUCKET, Key="foreign/records/part-0.parquet", Body=sink.getvalue().to_pybytes())
    client.put_object(Bucket=BUCKET, Key="broken/records/part-0.parquet", Body=b"not parquet at all")
    cases = {
        f"s3://{BUCKET}/no/such/shards": ("no/such/shards", 2),
        "s3://logos-no-such-bucket/shards": ("logos-no-such-bucket", 2),
        f"s3://{BUCKET}/ingest/nomatch-*/records/*.parquet": ("matches no file", 2),
        f"s3://{BUCKET}/foreign": ("missing columns", 2),
        f"s3://{BUCKET}/broken": ("not a Parquet shard", 1),
    }
    for uri, (reason, expected) in cases.items():
        code, err = _dedup_error(capsys, store, good, uri)
        lines = err.strip().splitlines()
        assert code == expected and len(lines) == 1 and lines[0].startswith("error: "), (uri, err)
        assert reason in lines[0] and uri.split("/", 3)[3] in lines[0], (uri, lines[0])
    assert DatasetStore(store).names() == []


def test_store_options_reach_delta_and_fsspec_and_no_manifest(s3, monkeypatch):
    """Endpoint and credentials given as fsspec ``storage_options`` (none in the environment) serve every
    store operation, the Delta commits included; the manifest written holds none of them."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    s3fs.S3FileSystem.clear_instance_cache()
    secret = "options-secret-Pz93kd7Q"
    options = {"key": "AKIAOPTIONSKEY0001", "secret": secret, "client_kwargs": {"endpoint_url": s3}}
    store = DatasetStore(f"s3://{BUCKET}/with-options", storage_options=options)
    from pipeline.versions import Manifest

    table = store.write_table("opts", "records", pa.table({"content_id": ["a", "b"], "n_tokens": [1, 2]}))
    manifest = store.register(Manifest(name="opts", version="v1", stage="dedup", inputs=[], config=options,
                                       code_version="test", tokenizer_hash="", tables={"records": table}))
    again = DatasetStore(f"s3://{BUCKET}/with-options", storage_options=options)
    assert again.read(again.manifest("opts@v1"))["content_id"].to_list() == ["a", "b"]
    stored = again.fs.cat_file(f"{BUCKET}/with-options/opts/manifests/v1.json").decode()
    assert secret not in stored and manifest.config["secret"] == secret  # redacted on disk only
    s3fs.S3FileSystem.clear_instance_cache()


def test_split_exclusion_file_on_s3_reads_as_the_local_one(s3, tmp_path):
    from pipeline.stages.split import SplitSettings, prepare

    text = "# held-out molecules\nCCO\n\nc1ccccc1 \nC#N\n"
    (tmp_path / "exclude.txt").write_text(text)
    boto3.client("s3", endpoint_url=s3).put_object(Bucket=BUCKET, Key="exclude.txt", Body=text.encode())
    remote = prepare(SplitSettings(exclude=f"s3://{BUCKET}/exclude.txt"))
    assert remote.exclusions == prepare(SplitSettings(exclude=str(tmp_path / "exclude.txt"))).exclusions
    assert remote.exclusions == ("CCO", "c1ccccc1", "C#N")
