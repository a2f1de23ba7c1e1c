"""The plain SMILES source on real ChEMBL SMILES (from the chemreps fixture), written as the one-column
tables it reads (csv with a header, headerless .smi with names, gzip). Canonical forms are checked
against RDKit called directly."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest
from rdkit import Chem

from grammar.formats import FORMATS
from grammar.tokenizer import default_tokenizer
from pipeline.records import Reject, Sample, SourceItem, dedup_key
from pipeline.sources import make_source
from pipeline.sources.base import Source, convert_file


def smiles_source(**options: object) -> Source:
    """The source as the ingest engine builds it from (typed, checked) options."""
    return make_source("smiles", options)

def run(source: Source, uri: Path | str) -> tuple[list[SourceItem], list[Sample], list[Reject]]:
    """What the ingest engine does with one file: read, convert each item."""
    done = convert_file(source, str(uri))
    return done.items, done.samples, done.rejects


@pytest.fixture(scope="module")
def chembl_rows(data_dir: Path) -> list[dict[str, str]]:
    with open(data_dir / "chembl/chembl_30_chemreps_100.txt") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_csv_with_header_gzip_and_round_trip(chembl_rows: list[dict[str, str]], tmp_path: Path) -> None:
    smiles = [row["canonical_smiles"] for row in chembl_rows]
    path = tmp_path / "smiles.csv.gz"
    path.write_bytes(gzip.compress(("SMILES\n" + "\n".join(smiles) + "\n").encode()))
    items, samples, rejects = run(smiles_source(), path)
    assert (len(items), len(samples), rejects) == (100, 100, [])
    assert items[0].locator == "line 2" and samples[0].source_id == "smiles.csv:line 2"
    tokenizer = default_tokenizer()
    for raw, sample in zip(smiles, samples, strict=True):
        canonical = Chem.MolToSmiles(Chem.MolFromSmiles(raw))
        assert sample.text == f"<MoleculeS>{canonical}<MoleculeE>"
        assert sample.dedup_key == dedup_key("molecule", canonical)  # the default key: the text's SMILES
        assert FORMATS["molecule"].write(FORMATS["molecule"].parse(sample.text)) == sample.text
        assert tokenizer.decode(tokenizer.encode(sample.text)) == sample.text


def test_headerless_smi_with_names_as_ids(chembl_rows: list[dict[str, str]], tmp_path: Path) -> None:
    path = tmp_path / "chembl.smi"
    path.write_text("".join(f"{row['canonical_smiles']} {row['chembl_id']}\n" for row in chembl_rows[:20]))
    items, samples, rejects = run(smiles_source(delimiter=" ", id_column=1), path)
    assert (len(samples), rejects) == (20, [])
    assert [s.source_id for s in samples] == [row["chembl_id"] for row in chembl_rows[:20]]
    assert items[0].locator == "line 1"


def test_named_column_in_a_wider_table(chembl_rows: list[dict[str, str]], tmp_path: Path) -> None:
    path = tmp_path / "table.tsv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["chembl_id", "canonical_smiles"])
        writer.writerows([row["chembl_id"], row["canonical_smiles"]] for row in chembl_rows[:10])
    _, samples, rejects = run(smiles_source(column="canonical_smiles", id_column="chembl_id"), path)
    assert (len(samples), rejects) == (10, [])
    assert samples[3].source_id == chembl_rows[3]["chembl_id"]
    _, _, rejects = run(smiles_source(column="smiles"), path)
    assert [r.reason_code for r in rejects] == ["wrong_header"]


def test_standardize_option_gives_the_chembl_parent(tmp_path: Path) -> None:
    path = tmp_path / "salts.csv"
    path.write_text("smiles\nCC(=O)Oc1ccccc1C(=O)[O-].[Na+]\n")
    _, plain, _ = run(smiles_source(), path)
    _, parent, _ = run(smiles_source(standardize=True), path)
    assert plain[0].text == "<MoleculeS>CC(=O)Oc1ccccc1C(=O)[O-].[Na+]<MoleculeE>"
    assert parent[0].text == "<MoleculeS>CC(=O)Oc1ccccc1C(=O)O<MoleculeE>"  # aspirin, salt stripped


def test_invalid_and_pentavalent_rows_are_rejected(chembl_rows: list[dict[str, str]], tmp_path: Path) -> None:
    good = [row["canonical_smiles"] for row in chembl_rows[:10]]
    path = tmp_path / "mixed.csv"
    path.write_text("smiles\n" + "\n".join([*good[:5], "CC(C)(C)(C)(C)C", "C1CC", "", "Xx", *good[5:]]) + "\n")
    items, samples, rejects = run(smiles_source(), path)
    assert len(samples) == 10 and len(items) == 13  # the empty line is not a record
    assert [(r.locator, r.reason_code) for r in rejects] == [
        ("line 7", "invalid_smiles"), ("line 8", "invalid_smiles"), ("line 10", "invalid_smiles"),
    ]
    assert "valence" in rejects[0].reason.lower()


def test_file_level_problems(chembl_rows: list[dict[str, str]], tmp_path: Path) -> None:
    text = ("smiles\n" + "\n".join(row["canonical_smiles"] for row in chembl_rows) + "\n").encode()
    compressed = gzip.compress(text)
    cases = {
        "empty.csv": (b"", "empty_file"),
        "corrupt.csv.gz": (compressed[: len(compressed) - 40], "corrupt_gzip"),
        "latin1.csv": (text[:500] + b"\nCC\xe9\n" + text[500:], "not_utf8"),
    }
    for name, (content, code) in cases.items():
        (tmp_path / name).write_bytes(content)
        items, samples, rejects = run(smiles_source(), tmp_path / name)
        assert [r.reason_code for r in rejects] == [code], name
        assert len(samples) == len(items)
