"""The Ray ingest engine on real fixture files mixed with broken ones."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from grammar.formats import FORMATS
from grammar.tokenizer import default_tokenizer
from pipeline.ingest import SUMMARY_FILE, IngestConfig, run_ingest
from pipeline.ray_runtime import ray_session
from pipeline.records import REJECT_SCHEMA, SHARD_SCHEMA

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def ray_cluster():
    with ray_session(num_cpus=2):
        yield


@pytest.fixture(scope="module")
def pdb_inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pdb_inputs")
    for name in ("3o5r.cif", "1k6p.cif", "1bna.cif", "1YJP_invalid.cif.gz", "1pfe.cif.gz"):
        shutil.copy(DATA / "pdb/mmcif" / name, folder / name)
    shutil.copy(DATA / "pdb/legacy_pdb/pdb1gdr.ent", folder / "pdb1gdr.ent")
    (folder / "truncated.cif.gz").write_bytes((DATA / "pdb/mmcif/1pfe.cif.gz").read_bytes()[:3000])
    (folder / "empty.cif").write_bytes(b"")
    (folder / "latin1.cif").write_bytes("data_X\n_struct.title 'Prot\xe9ine'\n".encode("latin-1"))
    return folder


def _ingest(source: str, inputs: list[str], out: Path, **options) -> dict:
    config = IngestConfig(source=source, inputs=inputs, out=str(out), source_options=options, workers=2)
    return run_ingest(config).as_dict()


def test_pdb_files_good_and_bad_are_all_accounted_for(ray_cluster, pdb_inputs, tmp_path):
    summary = _ingest("pdb", [str(pdb_inputs)], tmp_path / "out")
    files = sorted(p.name for p in pdb_inputs.iterdir())
    assert summary["files"] == len(files) == 9
    assert summary["items"]["read"] == summary["items"]["written"] + summary["items"]["rejected"] == 9
    # 3o5r and 1k6p, and the CA-only 1GDR for its sequence alone; everything else is rejected with a reason
    assert summary["items"]["written"] == 3 and summary["part_rejects"] >= 1
    rejects = pl.read_parquet(tmp_path / "out/rejects/*.parquet")
    by_file = {Path(uri).name: code for uri, code in rejects.select("source_uri", "reason_code").iter_rows()}
    assert by_file["truncated.cif.gz"] == "corrupt_gzip"
    assert by_file["empty.cif"] == "empty_file"
    assert by_file["latin1.cif"] == "not_utf8"
    assert by_file["1YJP_invalid.cif.gz"] == "invalid_atom_site"
    assert by_file["1bna.cif"] == "no_protein_chain"
    assert by_file["pdb1gdr.ent"] == "ca_only_model"  # no pocket from a CA trace: a part reject
    assert "1pfe.cif.gz" in by_file
    assert all(rejects["reason"].str.len_chars() > 10)  # a human-readable reason, not just a code
    assert json.loads((tmp_path / "out" / SUMMARY_FILE).read_text())["items"] == summary["items"]


def test_shards_have_the_fixed_schema_and_tokens_that_decode_to_the_text(ray_cluster, pdb_inputs, tmp_path):
    _ingest("pdb", [str(pdb_inputs / "3o5r.cif")], tmp_path / "out")
    parts = sorted((tmp_path / "out/records").glob("*.parquet"))
    assert parts and all(pq.read_schema(p).equals(SHARD_SCHEMA) for p in parts)
    table = pl.read_parquet(tmp_path / "out/records/*.parquet")
    tokenizer = default_tokenizer()
    for row in table.iter_rows(named=True):
        assert tokenizer.decode(row["input_ids"]) == row["text"] and row["n_tokens"] == len(row["input_ids"])
        assert FORMATS[row["task"]].domain == row["domain"]
        assert json.loads(row["metadata"])["entry_id"] == "3O5R"
    assert set(table["task"]) == {"protein", "pocket", "pocket_smiles", "search", "trans",
                                  "complex_residue_smiles", "complex_residue_surface_smiles",
                                  "complex_residue_surface_expanded_smiles"}


def test_output_is_deterministic_and_reruns_replace_old_parts(ray_cluster, tmp_path):
    inputs = [str(DATA / "uspto/USPTO_50K_sample.csv"), str(DATA / "uspto/lowe_grants_sample_small.rsmi")]
    first = _ingest("uspto", inputs, tmp_path / "a")
    second = _ingest("uspto", inputs, tmp_path / "a")  # same folder again: no stale or doubled parts
    third = _ingest("uspto", inputs, tmp_path / "b")
    assert first["records"] == second["records"] == third["records"] == 2 * (2500 + 6)
    a, b = (sorted((tmp_path / d / "records").glob("*.parquet")) for d in "ab")
    assert [p.name for p in a] == [p.name for p in b]
    for x, y in zip(a, b, strict=True):
        assert pq.read_table(x).equals(pq.read_table(y))


def test_a_file_that_breaks_mid_stream_keeps_what_was_read(ray_cluster, tmp_path):
    lines = (DATA / "chembl/chembl_30_chemreps_100.txt").read_bytes()
    (tmp_path / "cut.txt.gz").write_bytes(gzip.compress(lines)[: len(gzip.compress(lines)) * 2 // 3])
    summary = _ingest("chembl", [str(tmp_path / "cut.txt.gz")], tmp_path / "out", standardize=False)
    items = summary["items"]
    assert items["read"] == items["written"] + items["rejected"]
    assert items["rejected"] == 1 and 0 < items["written"] < 100
    rejects = pq.read_table(tmp_path / "out/rejects").to_pylist()
    assert pq.read_schema(next((tmp_path / "out/rejects").glob("*.parquet"))).equals(REJECT_SCHEMA)
    assert rejects[0]["reason_code"] == "corrupt_gzip" and rejects[0]["locator"].startswith("after ")
