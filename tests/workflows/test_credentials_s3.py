"""Credentials never persist, with the home on object storage (issue 11, item 4): a workflow whose home is
``s3://`` (moto on loopback; endpoint and credentials from the environment) and whose source reads its
S3 input with a fake key and secret in ``storage_options`` writes them into no object of the bucket, no
local file of the run, and no line of its output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml
from moto.server import ThreadedMotoServer

from pipeline.redact import REDACTED

REPO = Path(__file__).resolve().parents[2]
BUCKET = "logos-secrets-home"
ACCESS_KEY = "AKIAFAKEACCESSKEY4517"  # s3fs's ``key`` (moto accepts any)
SECRET = "fake-secret-s3home-Hq27LmXv9RtB"  # s3fs's ``secret``


@pytest.mark.slow
def test_s3_home_with_storage_credentials_writes_and_prints_none(tmp_path):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                              aws_secret_access_key="testing", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.upload_file(str(REPO / "tests/data/chembl/chembl_30_chemreps_100.txt"), BUCKET, "in/chemreps.txt")
        workflow = tmp_path / "secrets.yaml"
        workflow.write_text(yaml.safe_dump({
            "name": "secrets", "home": f"s3://{BUCKET}/home", "targets": ["dedup"], "report": False,
            "ingest": {"sources": {"chembl": {
                "inputs": [f"s3://{BUCKET}/in/chemreps.txt"],
                "options": {"storage_options": {"key": ACCESS_KEY, "secret": SECRET}},
            }}},
            "dedup": {"near": None},
        }))
        env = {**os.environ, "PYTHONPATH": str(REPO), "LOGOS_CACHE": str(tmp_path / "cache"),
               "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}
        done = subprocess.run([sys.executable, "-m", "workflows.cli", "run", str(workflow)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
                for o in page.get("Contents", [])]
        assert any(k.startswith("home/datasets/secrets/manifests/") for k in keys), keys  # the run wrote to S3
        summary_key = next(k for k in keys if k.startswith("home/ingest/chembl/") and k.endswith("/summary.json"))
        summary = json.loads(client.get_object(Bucket=BUCKET, Key=summary_key)["Body"].read())
        assert summary["config"]["source_options"]["storage_options"] == {"key": REDACTED, "secret": REDACTED}
        assert summary["items"]["written"] > 0  # the source read its input with those credentials
        for text in (ACCESS_KEY, SECRET):
            assert text not in done.stdout and text not in done.stderr
            leaked = [k for k in keys if text.encode() in client.get_object(Bucket=BUCKET, Key=k)["Body"].read()]
            leaked += [str(p) for p in tmp_path.rglob("*") if p.is_file() and p != workflow
                       and text.encode() in p.read_bytes()]
            assert leaked == [], f"{text} written to {leaked}"
        run = json.loads(next((tmp_path / "cache").glob("homes/*/runs/*/run.json")).read_text())
        assert run["config"]["ingest"]["sources"]["chembl"]["options"]["storage_options"]["secret"] == REDACTED
    finally:
        server.stop()
