"""The Materials Project source on the real fixtures: emmet 'materials' documents (JSON.gz), the same
documents as JSON Lines / API responses / ComputedStructureEntry dicts, pymatgen Structure JSON, a CIF
named by mp-id and MP-20 CSV rows. Structures are checked against pymatgen reading the files directly."""

from __future__ import annotations

import csv
import gzip
import json
import warnings
from pathlib import Path

import pytest
from pymatgen.core import Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry
from pymatgen.io.cif import CifParser
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from grammar.formats import FORMATS
from grammar.material import Crystal
from grammar.tokenizer import default_tokenizer
from pipeline.records import Reject, Sample, SourceItem, material_group_key
from pipeline.sources import make_source
from pipeline.sources.base import Source, convert_file
from pipeline.sources.mp import MpFormat

EMMET = "mp/emmet_materials_Li_Fe_V.json.gz"
MP_20 = "mp/mp_20_sample.csv"


def mp_source(**options: object) -> Source:
    """The source as the ingest engine builds it from (typed, checked) options."""
    return make_source("mp", options)

def run(source: Source, uri: Path | str) -> tuple[list[SourceItem], list[Sample], list[Reject]]:
    """What the ingest engine does with one file: read, convert each item."""
    done = convert_file(source, str(uri))
    return done.items, done.samples, done.rejects


@pytest.fixture(scope="module")
def emmet_docs(data_dir: Path) -> list[dict]:
    return json.loads(gzip.decompress((data_dir / EMMET).read_bytes()))


def check_crystals(samples: list[Sample], structures: list[Structure]) -> None:
    """Each text parses back to a crystal matching the structure pymatgen read, and tokenizes losslessly."""
    material, tokenizer = FORMATS["material"], default_tokenizer()
    for sample, structure in zip(samples, structures, strict=True):
        parsed = material.parse(sample.text)
        assert material.same(parsed, Crystal.from_structure(structure)), sample.source_id
        assert tokenizer.decode(tokenizer.encode(sample.text)) == sample.text
        # The space group from spglib on the structure pymatgen read (the grammar's symprec, 0.01 Å), not
        # read back out of the record's own text.
        space_group = SpacegroupAnalyzer(structure, symprec=0.01, angle_tolerance=5).get_space_group_number()
        assert sample.metadata["space_group"] == space_group, sample.source_id
        assert sample.dedup_key == material_group_key(structure.composition.reduced_formula, space_group)


def test_emmet_materials_documents(data_dir: Path, emmet_docs: list[dict]) -> None:
    items, samples, rejects = run(mp_source(), data_dir / EMMET)
    assert (len(items), len(samples), rejects) == (21, 21, [])
    assert [s.source_id for s in samples] == [doc["task_id"] for doc in emmet_docs]
    assert items[0].locator == f"doc 1 ({emmet_docs[0]['task_id']})"
    for doc, sample in zip(emmet_docs, samples, strict=True):
        assert sample.metadata["formula"] == doc["formula_pretty"]
        assert sample.metadata["energy_per_atom"] == doc["energy_per_atom"]
        assert sample.metadata["mp_space_group"] == doc["symmetry"]["number"]
    check_crystals(samples, [Structure.from_dict(doc["structure"]) for doc in emmet_docs])


def test_jsonl_api_response_and_material_id(emmet_docs: list[dict], tmp_path: Path) -> None:
    """JSON Lines, and an API page ({"data": [...]}) of summary-style docs keyed by material_id."""
    jsonl = tmp_path / "materials.jsonl.gz"
    jsonl.write_bytes(gzip.compress("".join(json.dumps(doc) + "\n" for doc in emmet_docs[:5]).encode()))
    items, samples, rejects = run(mp_source(), jsonl)
    assert [s.source_id for s in samples] == [doc["task_id"] for doc in emmet_docs[:5]] and rejects == []
    assert items[2].locator == f"line 3 ({emmet_docs[2]['task_id']})"
    broken = tmp_path / "broken.jsonl"  # one truncated line is one reject; the lines after it still read
    lines = [json.dumps(doc) for doc in emmet_docs[:3]]
    broken.write_text("\n".join([lines[0], lines[1][:500], lines[2]]) + "\n")
    items, samples, rejects = run(mp_source(), broken)
    assert len(samples) == 2 and [(r.locator, r.reason_code) for r in rejects] == [("line 2", "invalid_json")]
    summary = [{"material_id": d["task_id"], "structure": d["structure"], "band_gap": 1.5} for d in emmet_docs[:4]]
    page = tmp_path / "summary_page.json"
    page.write_text(json.dumps({"data": summary, "meta": {"total_doc": 4}}))
    _, samples, rejects = run(mp_source(), page)
    assert [s.source_id for s in samples] == [d["material_id"] for d in summary] and rejects == []
    assert samples[0].metadata["band_gap"] == 1.5


def test_computed_structure_entries(emmet_docs: list[dict], tmp_path: Path) -> None:
    """What MPRester.get_entries returns: built from each document's GGA entry and its structure."""
    entries = [
        ComputedStructureEntry(
            Structure.from_dict(doc["structure"]), doc["entries"]["gga"]["energy"],
            parameters=doc["entries"]["gga"]["parameters"], entry_id=doc["entries"]["gga"]["entry_id"],
        )
        for doc in emmet_docs[:6]
    ]
    path = tmp_path / "entries.json"
    path.write_text(json.dumps([entry.as_dict() for entry in entries]))
    _, samples, rejects = run(mp_source(), path)
    assert rejects == [] and [s.source_id for s in samples] == [e.entry_id for e in entries]
    assert [s.metadata["energy"] for s in samples] == [e.energy for e in entries]
    check_crystals(samples, [e.structure for e in entries])
    single = tmp_path / "one_entry.json"  # one entry alone: its own "data" dict must not read as an API page
    single.write_text(json.dumps(entries[1].as_dict()))
    _, samples, rejects = run(mp_source(), single)
    assert rejects == [] and [s.source_id for s in samples] == [entries[1].entry_id]


def test_structure_json_files_and_a_disordered_one(data_dir: Path) -> None:
    paths = sorted((data_dir / "mp/structures").glob("*.json"))
    results = {path.stem: run(mp_source(), path) for path in paths}
    disordered = [stem for stem, (_, samples, _) in results.items() if not samples]
    assert disordered == ["Li10GeP2S12"]  # the one fixture with partial Li/Ge/P occupancies
    _, _, rejects = results["Li10GeP2S12"]
    assert [(r.reason_code, r.stage) for r in rejects] == [("disordered_structure", "convert")]
    assert not Structure.from_file(data_dir / "mp/structures/Li10GeP2S12.json").is_ordered
    # TransformedStructure files name their mp-id in the history; plain ones fall back to the file name.
    assert results["TiO2"][1][0].source_id == "mp-554278" and results["VO2"][1][0].source_id == "mp-19094"
    assert results["BaNiO3"][1][0].source_id == "BaNiO3"
    ordered = [stem for stem in results if stem not in disordered]
    check_crystals([results[stem][1][0] for stem in ordered],
                   [Structure.from_file(data_dir / f"mp/structures/{stem}.json") for stem in ordered])


def test_ordering_disordered_structures(data_dir: Path, tmp_path: Path) -> None:
    structure = Structure.from_file(data_dir / "mp/structures/LiFePO4.json")
    structure.replace_species({"Fe": {"Fe": 0.5, "Mn": 0.5}})  # a real olivine solid solution, LiFe0.5Mn0.5PO4
    path = tmp_path / "LiFe0.5Mn0.5PO4.json"
    path.write_text(json.dumps(structure.as_dict()))
    assert [r.reason_code for r in run(mp_source(), path)[2]] == ["disordered_structure"]
    _, samples, rejects = run(mp_source(order_disordered=True), path)
    assert rejects == [] and samples[0].metadata["ordered_from_disordered"] is True
    crystal = FORMATS["material"].parse(samples[0].text)
    assert crystal.structure.composition.reduced_composition == structure.composition.reduced_composition
    # LGPS's occupancies give no whole number of Li atoms in the cell: ordering fails, with the reason.
    lgps = data_dir / "mp/structures/Li10GeP2S12.json"
    _, samples, rejects = run(mp_source(order_disordered=True), lgps)
    assert samples == [] and [r.reason_code for r in rejects] == ["ordering_failed"]


def test_cif_named_by_mp_id_and_a_disordered_cif(data_dir: Path, tmp_path: Path) -> None:
    items, samples, rejects = run(mp_source(), data_dir / "mp/Si_mp_149.cif")
    assert (len(items), rejects, samples[0].source_id) == (1, [], "mp-149")
    check_crystals(samples, CifParser(data_dir / "mp/Si_mp_149.cif").parse_structures(primitive=False))
    text = (data_dir / "mp/Si_mp_149.cif").read_text()
    half = text.replace("0.25000000  0.75000000  0.25000000  1.0", "0.25000000  0.75000000  0.25000000  0.5")
    assert half != text
    (tmp_path / "Si_vacancy_mp_149.cif").write_text(half)
    _, samples, rejects = run(mp_source(), tmp_path / "Si_vacancy_mp_149.cif")
    assert samples == [] and [(r.locator, r.reason_code) for r in rejects] == [("file", "disordered_structure")]


def test_mp_20_csv(data_dir: Path) -> None:
    with open(data_dir / MP_20) as handle:
        rows = list(csv.DictReader(handle))
    items, samples, rejects = run(mp_source(), data_dir / MP_20)
    assert (len(items), len(samples), rejects) == (len(rows), len(rows), [])
    assert [s.source_id for s in samples] == [row["material_id"] for row in rows]
    assert items[0].locator == f"row 1 ({rows[0]['material_id']})"
    assert [s.metadata["band_gap"] for s in samples] == [float(row["band_gap"]) for row in rows]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structures = [CifParser.from_str(row["cif"]).parse_structures(primitive=False)[0] for row in rows[::7]]
    check_crystals(samples[::7], structures)


def test_file_level_and_document_problems(data_dir: Path, emmet_docs: list[dict], tmp_path: Path) -> None:
    compressed = (data_dir / EMMET).read_bytes()
    csv_bytes = (data_dir / MP_20).read_bytes()
    cases = {
        "corrupt.json.gz": (compressed[: len(compressed) // 2], "corrupt_gzip"),
        "empty.json": (b"", "empty_file"),
        "broken.json": (json.dumps(emmet_docs[:2])[:-200].encode(), "invalid_json"),
        "latin1.csv": (csv_bytes[:3000] + "Fe\xe9".encode("latin-1") + csv_bytes[3000:], "not_utf8"),
        "wrong.csv": (b"material_id,formula\nmp-1,Fe\n", "wrong_header"),
    }
    for name, (content, code) in cases.items():
        (tmp_path / name).write_bytes(content)
        items, samples, rejects = run(mp_source(), tmp_path / name)
        assert [r.reason_code for r in rejects] == [code], name
        assert len(samples) == len(items), name
    no_structure = {k: v for k, v in emmet_docs[0].items() if k not in ("structure",)}
    (tmp_path / "docs.json").write_text(json.dumps([no_structure, emmet_docs[1]]))
    items, samples, rejects = run(mp_source(format=MpFormat.JSON), tmp_path / "docs.json")
    assert len(items) == 2 and len(samples) == 1
    expected = [(f"doc 1 ({no_structure['task_id']})", "invalid_structure")]
    assert [(r.locator, r.reason_code) for r in rejects] == expected
