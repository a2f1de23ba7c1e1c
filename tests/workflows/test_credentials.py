"""Credentials never persist: a workflow whose source options carry storage credentials writes them into no
file under its home and prints them on no line (issue 11, item 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.redact import REDACTED, redact, redact_text, secret_values

REPO = Path(__file__).resolve().parents[2]
ACCESS_KEY = "AKIAFAKEACCESSKEY7391"  # s3fs's ``key``
SECRET = "fake-secret-Zq81xPwT0vLmN4kR"  # s3fs's ``secret``


def test_redact_names_and_uris():
    config = {"storage_options": {"key": ACCESS_KEY, "secret": SECRET, "client_kwargs": {"region_name": "eu"}},
              "hf_token": "hf_abc123", "eod_token": "<eod>", "inputs": [f"s3://user:{SECRET}@host/bucket/a.txt"]}
    clean = redact(config)
    assert clean["storage_options"] == {"key": REDACTED, "secret": REDACTED, "client_kwargs": {"region_name": "eu"}}
    assert clean["hf_token"] == REDACTED and clean["eod_token"] == "<eod>"  # a tokenizer token is not a secret
    assert clean["inputs"] == [f"s3://user:{REDACTED}@host/bucket/a.txt"]
    assert config["storage_options"]["secret"] == SECRET  # a copy: the filesystem still gets the real value
    assert secret_values(config) == {ACCESS_KEY, SECRET, "hf_abc123"}
    message = redact_text(f"open failed with secret={SECRET}", secret_values(config))
    assert message == f"open failed with secret={REDACTED}"


@pytest.mark.slow
def test_workflow_with_storage_credentials_writes_and_prints_none(tmp_path):
    """Ingest (on Ray, the options reach the workers) and dedup, with the credentials in the source's
    ``storage_options``; local files, so any credential is accepted and ignored by the filesystem."""
    home = tmp_path / "home"
    workflow = tmp_path / "secrets.yaml"
    workflow.write_text(yaml.safe_dump({
        "name": "secrets", "home": str(home), "targets": ["dedup"], "report": False,
        "ingest": {"sources": {"chembl": {
            "inputs": [str(REPO / "tests/data/chembl/chembl_30_chemreps_100.txt")],
            "options": {"storage_options": {"key": ACCESS_KEY, "secret": SECRET}},
        }}},
        "dedup": {"near": None},
    }))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "workflows.cli", "run", str(workflow)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # Quiet by default: stderr holds one progress line per stage and nothing else (no Ray or library logs).
    stages = [line.split("  ")[0].strip() for line in done.stderr.splitlines()]
    assert stages == ["ingest chembl", "dedup"], done.stderr
    assert "100 items -> " in done.stderr and done.stdout.startswith("run ")
    summary = json.loads(next(home.glob("ingest/chembl/*/summary.json")).read_text())
    assert summary["config"]["source_options"]["storage_options"] == {"key": REDACTED, "secret": REDACTED}
    assert summary["items"]["written"] > 0  # the credentials did reach the (local) filesystem without harm
    for text in (ACCESS_KEY, SECRET):
        assert text not in done.stdout and text not in done.stderr
        leaked = [str(p) for p in home.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]
        assert leaked == [], f"{text} written to {leaked}"
    run = json.loads(next(home.glob("runs/*/run.json")).read_text())
    assert run["config"]["ingest"]["sources"]["chembl"]["options"]["storage_options"]["secret"] == REDACTED
