"""The ChEMBL source on the real ChEMBL fixtures: chemreps, the AZ pKa SDF export, the EGFR activity CSV
and a SQLite database built from real rows. Standardized SMILES are checked against the ChEMBL Structure
Pipeline called directly on molblocks (its own entry points), ids against the files read with csv/RDKit."""

from __future__ import annotations

import csv
import gzip
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from chembl_structure_pipeline import get_parent_molblock, standardize_molblock
from chembl_structure_pipeline.exclude_flag import exclude_flag
from rdkit import Chem

from grammar.formats import FORMATS
from grammar.tokenizer import default_tokenizer
from pipeline.records import Reject, Sample, SourceItem, dedup_key
from pipeline.sources import make_source
from pipeline.sources.base import Source, convert_file
from pipeline.sources.chembl import ChemblFormat, detect_format

CHEMREPS = "chembl/chembl_30_chemreps_100.txt"
SDF = "chembl/CHEMBL26_3301362_AZ_bpka.sdf"
EGFR = "chembl/EGFR_compounds_teachopencadd.csv"
# The real ChEMBL DDL (chembl_XX_sqlite), trimmed to the columns the reader needs plus a few neighbours.
CHEMBL_DDL = """
CREATE TABLE molecule_dictionary (
    molregno BIGINT NOT NULL, pref_name VARCHAR(255), chembl_id VARCHAR(20) NOT NULL,
    max_phase NUMERIC(2, 1), structure_type VARCHAR(10) NOT NULL, molecule_type VARCHAR(30),
    PRIMARY KEY (molregno));
CREATE TABLE compound_structures (
    molregno BIGINT NOT NULL, molfile TEXT, standard_inchi VARCHAR(4000),
    standard_inchi_key VARCHAR(27) NOT NULL, canonical_smiles VARCHAR(4000),
    PRIMARY KEY (molregno), FOREIGN KEY(molregno) REFERENCES molecule_dictionary (molregno));
"""


def chembl_source(**options: object) -> Source:
    """The source as the ingest engine builds it from (typed, checked) options."""
    return make_source("chembl", options)

def run(source: Source, uri: Path | str) -> tuple[list[SourceItem], list[Sample], list[Reject]]:
    """What the ingest engine does with one file: read, convert each item."""
    done = convert_file(source, str(uri))
    return done.items, done.samples, done.rejects


def chemreps_rows(data_dir: Path) -> list[dict[str, str]]:
    with open(data_dir / CHEMREPS) as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def pipeline_parent(molblock: str) -> str:
    """The ChEMBL Structure Pipeline's own molblock entry points: standardize, then parent."""
    parent, _ = get_parent_molblock(standardize_molblock(molblock))
    return Chem.MolToSmiles(Chem.MolFromSmiles(Chem.MolToSmiles(Chem.MolFromMolBlock(parent))))


def assert_round_trips(samples: list[Sample]) -> None:
    tokenizer = default_tokenizer()
    for sample in samples:
        parsed = FORMATS["molecule"].parse(sample.text)
        assert FORMATS["molecule"].write(parsed) == sample.text
        assert tokenizer.decode(tokenizer.encode(sample.text)) == sample.text


def test_chemreps_ids_standardization_and_round_trip(data_dir: Path) -> None:
    rows = chemreps_rows(data_dir)
    items, samples, rejects = run(chembl_source(), data_dir / CHEMREPS)
    assert (len(items), len(samples), rejects) == (len(rows), len(rows), [])
    assert [s.source_id for s in samples] == [row["chembl_id"] for row in rows]
    assert [s.metadata["chembl_id"] for s in samples] == [row["chembl_id"] for row in rows]
    for row, sample in zip(rows, samples, strict=True):
        expected = pipeline_parent(Chem.MolToMolBlock(Chem.MolFromSmiles(row["canonical_smiles"])))
        assert sample.text == f"<MoleculeS>{expected}<MoleculeE>", row["chembl_id"]
        assert sample.dedup_key == dedup_key("molecule", expected)  # the default key: the parent's SMILES
        assert (sample.metadata.get("original_smiles") is not None) == (expected != row["canonical_smiles"])
    assert_round_trips(samples)


def test_sdf_export_ids_and_standardization_match_the_pipeline_on_molblocks(data_dir: Path) -> None:
    supplier = Chem.SDMolSupplier(str(data_dir / SDF), sanitize=False)
    expected_ids = [mol.GetProp("Molecule ChEMBL ID") for mol in supplier]
    items, samples, rejects = run(chembl_source(), data_dir / SDF)
    assert (len(items), len(samples), rejects) == (246, 246, [])
    assert [s.source_id for s in samples] == expected_ids
    assert items[2].locator == f"record 3 ({expected_ids[2]})"
    for index in range(0, len(samples), 5):  # every 5th record: the direct pipeline call is the slow part
        molblock = supplier.GetItemText(index).split("M  END")[0] + "M  END\n"
        assert samples[index].text == f"<MoleculeS>{pipeline_parent(molblock)}<MoleculeE>", expected_ids[index]
    assert samples[0].metadata["standard_type"] == supplier[0].GetProp("Standard Type")
    assert samples[0].metadata["assay_chembl_id"] == "CHEMBL3301362"
    assert_round_trips(samples)


def test_sdf_without_standardization_equals_rdkit_reading_the_file(data_dir: Path) -> None:
    supplier = Chem.SDMolSupplier(str(data_dir / SDF))
    expected = [Chem.MolToSmiles(Chem.MolFromSmiles(Chem.MolToSmiles(mol))) for mol in supplier]
    _, samples, rejects = run(chembl_source(standardize=False), data_dir / SDF)
    assert rejects == [] and [s.text for s in samples] == [f"<MoleculeS>{s}<MoleculeE>" for s in expected]
    assert sum("@" in s for s in expected) > 40  # stereocentres from wedged bonds survive


def test_activity_csv_keeps_activity_values_and_ids(data_dir: Path) -> None:
    with open(data_dir / EGFR) as handle:
        rows = list(csv.DictReader(handle))
    items, samples, rejects = run(chembl_source(standardize=False), data_dir / EGFR)
    assert (len(items), len(samples), rejects) == (len(rows), len(rows), [])
    assert [s.source_id for s in samples] == [row["molecule_chembl_id"] for row in rows]
    for row, sample in zip(rows[::97], samples[::97], strict=True):
        assert (sample.metadata["ic50"], sample.metadata["units"], sample.metadata["pic50"]) == (
            row["IC50"], row["units"], row["pIC50"])
        assert sample.text == f"<MoleculeS>{Chem.CanonSmiles(row['smiles'])}<MoleculeE>"
    assert_round_trips(samples[::10])


def test_web_export_with_semicolons_and_quoted_headers(data_dir: Path, tmp_path: Path) -> None:
    """ChEMBL's web interface writes ';'-separated CSV with "Molecule ChEMBL ID"/"Smiles" headers."""
    with open(data_dir / EGFR) as handle:
        rows = list(csv.DictReader(handle))[:30]
    path = tmp_path / "DOWNLOAD-egfr.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter=";", quoting=csv.QUOTE_ALL)
        writer.writerow(["Molecule ChEMBL ID", "Smiles", "Standard Type", "Standard Value", "Standard Units"])
        writer.writerows([r["molecule_chembl_id"], r["smiles"], "IC50", r["IC50"], r["units"]] for r in rows)
    assert detect_format(str(path)) is ChemblFormat.CSV
    _, samples, rejects = run(chembl_source(standardize=False), path)
    assert (len(samples), rejects) == (30, [])
    assert [s.source_id for s in samples] == [r["molecule_chembl_id"] for r in rows]
    assert samples[4].metadata["standard_value"] == rows[4]["IC50"]


def test_sqlite_release_tables(data_dir: Path, tmp_path: Path) -> None:
    rows = chemreps_rows(data_dir)
    path = tmp_path / "chembl_30.db"
    with sqlite3.connect(path) as db:
        db.executescript(CHEMBL_DDL)
        for molregno, row in enumerate(rows, start=1):
            db.execute("INSERT INTO molecule_dictionary VALUES (?, NULL, ?, NULL, 'MOL', 'Small molecule')",
                       (molregno, row["chembl_id"]))
            db.execute("INSERT INTO compound_structures VALUES (?, NULL, ?, ?, ?)",
                       (molregno, row["standard_inchi"], row["standard_inchi_key"], row["canonical_smiles"]))
        # A biologic: a dictionary row without a structure is not a small molecule to ingest.
        db.execute("INSERT INTO molecule_dictionary VALUES (1000, 'CETUXIMAB', 'CHEMBL1201577', 4, 'SEQ', 'Antibody')")
    db.close()
    assert detect_format(str(path)) is ChemblFormat.SQLITE
    items, samples, rejects = run(chembl_source(standardize=False), path)
    assert (len(samples), rejects) == (len(rows), [])
    assert [s.source_id for s in samples] == [row["chembl_id"] for row in rows]
    assert items[0].locator == f"molregno 1 ({rows[0]['chembl_id']})"
    _, from_text, _ = run(chembl_source(standardize=False), data_dir / CHEMREPS)
    assert [s.text for s in samples] == [s.text for s in from_text]


def test_bad_rows_are_rejected_with_reasons_and_the_rest_converts(data_dir: Path, tmp_path: Path) -> None:
    lines = (data_dir / CHEMREPS).read_text().splitlines(keepends=True)
    cisplatin = "N.N.Cl[Pt]Cl"
    assert exclude_flag(Chem.MolFromSmiles(cisplatin), includeRDKitSanitization=False)
    bad = [
        "CHEMBL900001\tCC(C)(C)(C)(C)C\t\t\n",  # pentavalent carbon
        "CHEMBL900002\tc1ccccc1C(=O\t\t\n",  # unclosed branch
        "CHEMBL11359\tN.N.Cl[Pt]Cl\t\t\n",  # cisplatin: the pipeline excludes metals
        "\tCCO\t\t\n",  # no id
    ]
    path = tmp_path / "chemreps_bad.txt"
    path.write_text("".join(lines[:11] + bad + lines[11:21]))
    items, samples, rejects = run(chembl_source(), path)
    assert len(samples) == 20
    by_code = {r.reason_code: r for r in rejects}
    expected = {"invalid_smiles": 2, "chembl_excluded": 1, "missing_chembl_id": 1}
    assert Counter(r.reason_code for r in rejects) == expected
    valence = next(r for r in rejects if "CHEMBL900001" in r.locator)
    assert valence.locator == "line 12 (CHEMBL900001)" and "valence" in valence.reason.lower()
    assert by_code["chembl_excluded"].locator == "line 14 (CHEMBL11359)"
    assert by_code["missing_chembl_id"].locator == "line 15"
    read_rejects = [r for r in rejects if r.stage == "read"]
    assert len(items) + len(read_rejects) == 24  # every data line is an item or a reject


def test_file_level_problems_are_one_reject_each(data_dir: Path, tmp_path: Path) -> None:
    text = (data_dir / CHEMREPS).read_bytes()
    compressed = gzip.compress(text)
    cases = {
        "empty.txt": (b"", "empty_file"),
        "header_only.txt": (text.split(b"\n", 1)[0] + b"\n", "empty_file"),
        "corrupt.txt.gz": (compressed[: len(compressed) // 2], "corrupt_gzip"),
        "latin1.txt": (text[:2000] + "\tcaf\xe9\n".encode("latin-1") + text[2000:], "not_utf8"),
        "wrong.txt": (b"molecule\tstructure\nCHEMBL1\tCCO\n", "wrong_header"),
    }
    for name, (content, code) in cases.items():
        (tmp_path / name).write_bytes(content)
        items, samples, rejects = run(chembl_source(standardize=False), tmp_path / name)
        assert [r.reason_code for r in rejects] == [code], name
        assert len(samples) == len(items), name  # what was read before the problem still converts
    sdf_text = (data_dir / SDF).read_text()
    truncated = sdf_text[: sdf_text.index("$$$$", 5000) + 400]  # three records and a half
    (tmp_path / "truncated.sdf").write_text(truncated)
    items, samples, rejects = run(chembl_source(standardize=False), tmp_path / "truncated.sdf")
    assert len(samples) == truncated.count("$$$$") and [r.reason_code for r in rejects] == ["truncated_record"]


@pytest.mark.parametrize("standardize", [True, False])
def test_sdf_record_with_a_broken_ctab_is_one_reject(data_dir: Path, tmp_path: Path, standardize: bool) -> None:
    records = (data_dir / SDF).read_text().split("$$$$\n")
    counts = records[1].split("\n")[3]  # the counts line: claim far more atoms than the block holds
    broken = records[1].replace(counts, "999" + counts[3:], 1)
    (tmp_path / "broken.sdf").write_text("$$$$\n".join([records[0], broken, records[2], ""]))
    items, samples, rejects = run(chembl_source(standardize=standardize), tmp_path / "broken.sdf")
    assert len(items) == 3 and len(samples) == 2
    assert [(r.locator.split(" (")[0], r.reason_code) for r in rejects] == [("record 2", "invalid_molblock")]


def test_format_override(data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "renamed.dat"
    path.write_bytes((data_dir / CHEMREPS).read_bytes())
    source = chembl_source(format="chemreps", standardize="false")  # as strings, the way the CLI passes them
    assert source.config.format is ChemblFormat.CHEMREPS
    assert len(run(source, path)[1]) == 100
