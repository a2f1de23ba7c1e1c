"""The smiles source's batch path (``read_blocks`` + ``convert_block``, see ``pipeline.sources.smiles``) against its
per-record path (``read`` + ``convert``), which the other molecule tests check against RDKit, the ChEMBL Structure
Pipeline and ChEMBL's own identifiers: shard rows, reject rows and accounting must be equal, byte for byte, on real
ChEMBL SMILES (RDKit-canonical and not), with rows the block path leaves to the per-record path (invalid SMILES,
valence errors, tokens outside the vocabulary), blank lines, every key option and standardization. The token ids
of the joined-text lookup are checked against the HF (Rust) tokenizer's own encoding of the same texts.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest
from rdkit import Chem

from grammar.tokenizer import default_tokenizer
from pipeline.sources import make_source
from tests.pipeline.sources.block_helpers import OtherKindTokenizer, assert_same, by_blocks, per_record

N_EGFR = 100  # EGFR rows (of 5,568) in the mixed table


def mixed_table(data_dir: Path, tmp_path: Path) -> Path:
    """Real ChEMBL SMILES as ChEMBL writes them (chemreps: mostly not RDKit's canonical form, salts included), the
    same molecules as RDKit writes them, EGFR rows, and the rows the per-record path must handle: unparsable,
    pentavalent carbon, empty, charges and atom maps outside the vocabulary, acyclic molecules, blank lines."""
    with open(data_dir / "chembl/chembl_30_chemreps_100.txt") as handle:
        chembl = [row["canonical_smiles"] for row in csv.DictReader(handle, delimiter="\t")]
    with open(data_dir / "chembl/EGFR_compounds_teachopencadd.csv") as handle:
        egfr = [row["smiles"] for _, row in zip(range(N_EGFR), csv.DictReader(handle), strict=False)]
    rdkit_written = [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in chembl[:40]]
    odd = ["C1CC", "CC(C)(C)(C)(C)C", "", "Xx", "[Cu+5]", "C[CH3:1]", "CCO", "CC(=O)O", "C", "[Na+].[Cl-]"]
    rows = chembl[:50] + odd[:5] + rdkit_written + odd[5:] + egfr + chembl[50:]
    path = tmp_path / "mixed.smi"
    lines = [f"{smiles} row{n}" for n, smiles in enumerate(rows)]
    lines[60:60] = ["", ""]  # blank lines: a gap in the line numbers
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("options", [{}, {"molecule_key": "inchikey"}, {"standardize": True}],
                         ids=["default", "inchikey", "standardize"])
def test_block_rows_equal_the_per_record_rows(data_dir: Path, tmp_path: Path, options: dict) -> None:
    path = mixed_table(data_dir, tmp_path)
    source = make_source("smiles", {"delimiter": " ", "id_column": 1, **options})
    expected = per_record(source, path)
    reasons = expected.stats.rejects_by_reason  # the odd rows really are rejects ([Cu+5] is a metal to ChEMBL's)
    assert reasons["invalid_smiles"] == 4 and reasons["unknown_token"] + reasons["chembl_excluded"] == 2
    assert expected.stats.items_written >= 240
    for max_records in (7, 4096):  # blocks that end mid-file, and one block (broken only by the blank lines)
        assert_same(expected, by_blocks(source, path, max_records))


def test_default_ids_and_locators_follow_the_lines(data_dir: Path, tmp_path: Path) -> None:
    """Without an id column a record's id is ``<file>:line N``: the blank lines must not shift a block's lines."""
    path = mixed_table(data_dir, tmp_path)
    source = make_source("smiles", {"delimiter": " "})
    expected = per_record(source, path)
    got = by_blocks(source, path, 16)
    assert_same(expected, got)
    ids = got.records_table()["source_id"].to_pylist()
    assert "mixed.smi:line 63" in ids and "mixed.smi:line 61" not in ids  # lines 61 and 62 are the blank ones


def test_read_failure_mid_file_keeps_the_records_before_it(data_dir: Path, tmp_path: Path) -> None:
    plain = mixed_table(data_dir, tmp_path).read_bytes()
    compressed = gzip.compress(plain)
    path = tmp_path / "damaged.smi.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    source = make_source("smiles", {"delimiter": " ", "id_column": 1})
    expected = per_record(source, path)
    assert expected.rejects[-1]["reason_code"] == "corrupt_gzip" and expected.stats.items_written > 50
    assert_same(expected, by_blocks(source, path, 64))


def test_joined_token_ids_equal_the_rust_tokenizer(data_dir: Path, tmp_path: Path) -> None:
    rows = by_blocks(make_source("smiles", {"delimiter": " "}), mixed_table(data_dir, tmp_path), 4096).records_table()
    texts = rows["text"].to_pylist()
    assert rows["input_ids"].to_pylist() == default_tokenizer().encode_batch(texts, engine="rust")


def test_other_tokenizer_kinds_and_engines_encode_through_the_tokenizer(data_dir: Path, tmp_path: Path) -> None:
    path = mixed_table(data_dir, tmp_path)
    source = make_source("smiles", {"delimiter": " ", "id_column": 1})
    for engine in ("python", "rust"):
        expected = per_record(source, path, engine)
        assert_same(expected, by_blocks(source, path, 100, OtherKindTokenizer(), engine))
        assert_same(expected, by_blocks(source, path, 100, engine=engine))
