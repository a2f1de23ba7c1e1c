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


def test_the_dataset_tokenizer_flows_from_ingest_to_the_megatron_export(ray_cluster, tmp_path):
    """Ingest with an extended (Qwen-style) tokenizer: ids from that tokenizer, a copy of it with the shards;
    the dataset stages keep it (manifest hash, export with its EOD and no bos); inputs ingested with
    different tokenizers are refused."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from transformers import AutoTokenizer

    from grammar.hf_extend import ExtendedTokenizer
    from grammar.tokenizer import load_tokenizer
    from pipeline.datasets import InputError, dedup_dataset, export_megatron_dataset, split_dataset
    from pipeline.split import ProteinClusterConfig, SplitConfig
    from pipeline.versions import DatasetStore
    from tests.grammar.base_tokenizers import make_base_tokenizer

    tokenizer_dir = ExtendedTokenizer.build(make_base_tokenizer("qwen3", tmp_path / "base")).save(tmp_path / "tok")
    extended = load_tokenizer(tokenizer_dir)
    chembl = [str(DATA / "chembl/chembl_30_chemreps_100.txt")]
    summary = run_ingest(IngestConfig(source="chembl", inputs=chembl, out=str(tmp_path / "ext"), workers=2,
                                      tokenizer=str(tokenizer_dir))).as_dict()
    assert summary["tokenizer"] == {"path": "tokenizer", "kind": "extended", "content_hash": extended.content_hash,
                                    "vocab_size": extended.vocab_size}
    assert load_tokenizer(tmp_path / "ext" / "tokenizer").content_hash == extended.content_hash
    table = pl.read_parquet(tmp_path / "ext/records/*.parquet")
    reference = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    assert table.height == summary["records"] > 50
    assert reference(table["text"].to_list(), add_special_tokens=False)["input_ids"] == table["input_ids"].to_list()
    assert [extended.decode(ids) for ids in table["input_ids"]] == table["text"].to_list()

    native = run_ingest(IngestConfig(source="chembl", inputs=chembl, out=str(tmp_path / "native"), workers=2))
    assert native.tokenizer["content_hash"] == default_tokenizer().content_hash
    store = DatasetStore(tmp_path / "store")
    with pytest.raises(InputError) as mixed:
        dedup_dataset(store, [str(tmp_path / "ext"), str(tmp_path / "native")], "mixed")
    message = str(mixed.value)
    assert "\n" not in message and extended.content_hash in message and default_tokenizer().content_hash in message
    assert not store.names()

    deduplicated = dedup_dataset(store, [str(tmp_path / "ext")], "ext").manifest
    assert deduplicated.tokenizer_hash == extended.content_hash
    split = SplitConfig(fractions=(0.8, 0.1, 0.1), proteins=ProteinClusterConfig(method="minhash"))
    split_dataset(store, "ext", "ext", split)
    exported = export_megatron_dataset(store, "ext", "ext").manifest
    assert exported.tokenizer_hash == extended.content_hash
    blend_path = store.root / exported.outputs["blend"]
    blend = json.loads(blend_path.read_text())
    assert blend["tokenizer"]["content_hash"] == extended.content_hash and blend["tokenizer"]["bos_id"] is None
    assert load_tokenizer(blend_path.parent / "tokenizer").content_hash == extended.content_hash
    eod = extended.token_id("<|endoftext|>")
    texts = set(table["text"].to_list())
    documents = IndexedDataset(str(blend_path.parent / blend["splits"]["train"]["prefixes"][0]))
    assert len(documents) > 0
    for i in range(len(documents)):
        ids = documents[i].tolist()
        assert ids[-1] == eod and extended.decode(ids[:-1]) in texts  # no prefix: Qwen has no bos


def test_ingest_cli_refuses_a_bad_tokenizer_directory_before_writing(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "workflows.cli", "ingest", "chembl",
                           str(DATA / "chembl/chembl_30_chemreps_100.txt"), "--out", str(tmp_path / "out"),
                           "--tokenizer", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "not a logos tokenizer directory" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_ingest_cli_fails_when_every_item_is_rejected(tmp_path):
    """Three lines no SMILES parser accepts: the job finishes (rejects written, summary balanced) and exits 1."""
    import subprocess
    import sys

    from rdkit import Chem

    bad = ["C1CC(", "not_a_smiles", "[Xx]CC"]
    assert all(Chem.MolFromSmiles(s) is None for s in bad)  # the reference: RDKit itself rejects each
    source = tmp_path / "bad.smi"
    source.write_text("\n".join(bad) + "\n")
    done = subprocess.run([sys.executable, "-m", "workflows.cli", "ingest", "smiles", str(source), "--out",
                           str(tmp_path / "out"), "--workers", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "read 3 = written 0 + rejected 3" in done.stderr and "every one of the 3 items was rejected" in done.stderr
    assert list((tmp_path / "out" / "rejects").glob("*.parquet"))


def test_logos_version_names_the_package_and_the_grammar():
    import subprocess
    import sys
    from importlib.metadata import version

    from grammar.vocab import VOCAB_VERSION

    done = subprocess.run([sys.executable, "-m", "workflows.cli", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"logos {version('logos')}, grammar {VOCAB_VERSION}"
