"""Object storage: real fixture files served by moto's S3 server on loopback read the same as locally,
through ``pipeline.io.expand_inputs`` and the ChEMBL source (plain and gzip text, and a SQLite database,
which the source downloads because SQLite cannot read through fsspec)."""

from __future__ import annotations

import gzip
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import s3fs
from moto.server import ThreadedMotoServer

from pipeline.io import expand_inputs
from pipeline.records import Reject, SourceItem
from pipeline.sources import make_source
from pipeline.sources.base import Source

BUCKET = "logos-test"
CHEMREPS = "chembl/chembl_30_chemreps_100.txt"
SDF = "chembl/CHEMBL26_3301362_AZ_bpka.sdf"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Uploads the fixtures; returns {s3 key: the local file with the same bytes}."""
    for name, value in {
        "AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()  # fsspec caches filesystems; this one must see the env
    gzipped = tmp_path / "chembl_30_chemreps_100.txt.gz"
    gzipped.write_bytes(gzip.compress((data_dir / CHEMREPS).read_bytes()))
    sdf = tmp_path / "pka.sdf.txt"  # named *.txt so the glob picks it; the source detects SDF by content
    shutil.copy(data_dir / SDF, sdf)
    local = {
        "chembl/chemreps.txt": data_dir / CHEMREPS, "chembl/chemreps_gzip.txt": gzipped, "chembl/pka.sdf.txt": sdf,
        "chembl/other/not_matched.csv": data_dir / "chembl/EGFR_compounds_teachopencadd.csv",
    }
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=BUCKET)
    for key, path in local.items():
        client.upload_file(str(path), BUCKET, key)
    yield local
    for key in local:
        client.delete_object(Bucket=BUCKET, Key=key)
    client.delete_bucket(Bucket=BUCKET)



def chembl_source(**options: object) -> Source:
    """The source as the ingest engine builds it from (typed, checked) options."""
    return make_source("chembl", options)

def read_all(uri: str) -> list[tuple[str, dict] | Reject]:
    source = chembl_source(standardize=False)
    return [(e.locator, e.payload) if isinstance(e, SourceItem) else e for e in source.read(uri)]


def test_s3_glob_and_reads_match_local_files(bucket: dict[str, Path]) -> None:
    uris = expand_inputs([f"s3://{BUCKET}/chembl/*.txt"])
    assert uris == sorted(f"s3://{BUCKET}/{key}" for key in bucket if key.endswith(".txt"))
    for uri in uris:
        remote = read_all(uri)
        assert remote == read_all(str(bucket[uri.removeprefix(f"s3://{BUCKET}/")])), uri
        assert len(remote) in (100, 246) and not any(isinstance(e, Reject) for e in remote)
    source = chembl_source(standardize=False)
    item = next(e for e in source.read(uris[0]) if isinstance(e, SourceItem))
    assert source.convert(item).samples[0].source_id == item.payload["chembl_id"]


def test_a_pattern_matching_nothing_is_an_error_beside_other_inputs(bucket: dict[str, Path], data_dir: Path) -> None:
    """An input pattern that matches no file names itself in the error, on S3 and locally, even when the
    other inputs find files (ingest would otherwise run on those alone, the pattern's files silently absent)."""
    for found, pattern in ((f"s3://{BUCKET}/chembl/*.txt", f"s3://{BUCKET}/chembl/nomatch-*.txt"),
                           (str(data_dir / CHEMREPS), str(data_dir / "chembl" / "nomatch-*.txt"))):
        assert expand_inputs([found])
        with pytest.raises(FileNotFoundError, match="matches no file") as error:
            expand_inputs([found, pattern])
        assert pattern in str(error.value)


def test_s3_sqlite_database_is_downloaded_and_read(bucket: dict[str, Path], s3_endpoint: str, tmp_path: Path) -> None:
    path = tmp_path / "chembl.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE molecule_dictionary (molregno BIGINT NOT NULL PRIMARY KEY, pref_name VARCHAR(255),"
            " chembl_id VARCHAR(20) NOT NULL);"
            "CREATE TABLE compound_structures (molregno BIGINT NOT NULL PRIMARY KEY, molfile TEXT,"
            " standard_inchi VARCHAR(4000), standard_inchi_key VARCHAR(27) NOT NULL, canonical_smiles VARCHAR(4000));"
        )
        rows = [line.split("\t") for line in bucket["chembl/chemreps.txt"].read_text().splitlines()[1:11]]
        for molregno, (chembl_id, smiles, inchi, key) in enumerate(rows, start=1):
            db.execute("INSERT INTO molecule_dictionary VALUES (?, NULL, ?)", (molregno, chembl_id))
            db.execute("INSERT INTO compound_structures VALUES (?, NULL, ?, ?, ?)", (molregno, inchi, key, smiles))
    db.close()
    boto3.client("s3", endpoint_url=s3_endpoint).upload_file(str(path), BUCKET, "chembl/chembl.db")
    remote = read_all(f"s3://{BUCKET}/chembl/chembl.db")
    assert remote == read_all(str(path)) and [p["chembl_id"] for _, p in remote] == [r[0] for r in rows]
    boto3.client("s3", endpoint_url=s3_endpoint).delete_object(Bucket=BUCKET, Key="chembl/chembl.db")
