"""The mof source on real CoRE MOF / QMOF / RASPA CIFs (tests/data/mp/mof) and one partial-occupancy CIF built
from ABAVIJ_clean (tests/data/mof; see tests/data/PROVENANCE.md).

References are independent of the decomposition: the metals' oxidation states from pymatgen's bond-valence
sums (Brown's method, its own parameter table) and pymatgen's common oxidation states, ZIF-8's published
building blocks (Zn2+ and 2-methylimidazolate, written by hand), the cell's composition from pymatgen's CIF
parse, and the grammar's parser reading the written text back.
"""

from __future__ import annotations

import gzip
import shutil
import warnings
from collections import Counter
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pymatgen.analysis.bond_valence import calculate_bv_sum
from pymatgen.core import Composition, Element, Structure
from rdkit import Chem

from grammar.formats import FORMATS
from grammar.tokenizer import default_tokenizer
from pipeline.check import check_roundtrip
from pipeline.convert import convert_items
from pipeline.records import SHARD_SCHEMA
from pipeline.sources import make_source
from pipeline.sources.base import convert_file
from pipeline.split import SplitConfig, assign_splits

DATA = Path(__file__).parents[2] / "data"
MOF_DIR = DATA / "mp" / "mof"
PARTIAL = DATA / "mof" / "ABAVIJ_partial_occupancy.cif"
DECOMPOSABLE = ("ABAVIJ_clean", "DALVIY_clean", "ZIF-8-RASPA", "qmof-fef756d")
ZIF8_PUBLISHED = ({"[Zn+2]"}, {Chem.CanonSmiles("Cc1ncc[n-]1")})  # Zn(2-methylimidazolate)2, Park et al. 2006


@cache
def structure(name: str) -> Structure:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_file(MOF_DIR / f"{name}.cif")


@cache
def sample_of(name: str):
    done = convert_file(make_source("mof"), str(MOF_DIR / f"{name}.cif"))
    assert not done.rejects, done.rejects
    (sample,) = done.samples
    return sample


def bond_valence_oxidation(crystal: Structure) -> dict[str, int]:
    """Per metal element, the rounded mean bond-valence sum over its sites (neighbours within 3 Å)."""
    sums: dict[str, list[float]] = {}
    for site in crystal:
        if site.specie.is_metal:
            sums.setdefault(site.specie.symbol, []).append(calculate_bv_sum(site, crystal.get_neighbors(site, 3.0)))
    return {element: round(float(np.mean(values))) for element, values in sums.items()}


@pytest.mark.parametrize("name", DECOMPOSABLE)
def test_core_and_qmof_cifs_give_charge_balanced_nodes_and_linkers(name):
    sample = sample_of(name)
    mof = FORMATS["mof"].parse(sample.text)
    assert sample.domain == "material" and sample.task == "mof" and mof == sample.obj
    # Metal charges in the nodes = the bond-valence oxidation state, one of the element's common ones.
    expected = bond_valence_oxidation(structure(name))
    for node in mof.nodes:
        for atom in Chem.MolFromSmiles(node).GetAtoms():
            if Element(atom.GetSymbol()).is_metal:
                assert atom.GetFormalCharge() == expected[atom.GetSymbol()], (node, expected)
                assert atom.GetFormalCharge() in Element(atom.GetSymbol()).common_oxidation_states
    # The building blocks, counted per cell, hold every atom of the CIF and no net charge (RDKit formal charges).
    blocks = sample.metadata["building_blocks"]
    assert set(blocks) == set(mof.nodes) | {linker.smiles for linker in mof.linkers}
    atoms: Counter[str] = Counter()
    charge = 0
    for smiles, count in blocks.items():
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        for atom in mol.GetAtoms():
            atoms[atom.GetSymbol()] += count
        charge += count * Chem.GetFormalCharge(mol)
    assert Composition(atoms) == structure(name).composition
    assert charge == 0


def test_zif8_is_published_zinc_and_2_methylimidazolate():
    mof = FORMATS["mof"].parse(sample_of("ZIF-8-RASPA").text)
    assert (set(mof.nodes), {linker.smiles for linker in mof.linkers}) == ZIF8_PUBLISHED


def test_dedup_key_and_split_group_follow_the_building_blocks_not_the_cell(tmp_path):
    # The same framework in a 2x1x1 supercell, written by pymatgen's own CIF writer, is the same record.
    supercell = structure("ZIF-8-RASPA").make_supercell([2, 1, 1], in_place=False)
    path = tmp_path / "ZIF-8-supercell.cif"
    supercell.to(filename=str(path))
    (bigger,) = convert_file(make_source("mof"), str(path)).samples
    zif8 = sample_of("ZIF-8-RASPA")
    assert bigger.metadata["sites"] == 2 * zif8.metadata["sites"]
    assert bigger.dedup_key == zif8.dedup_key and bigger.text == zif8.text
    assert zif8.split_group == f"key:{zif8.dedup_key}" and zif8.dedup_key.startswith("mof:")
    others = {sample_of(name).dedup_key for name in DECOMPOSABLE if name != "ZIF-8-RASPA"}
    assert zif8.dedup_key not in others and len(others) == 3


def test_partial_occupancy_is_a_reject_with_its_reason():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert not Structure.from_file(PARTIAL).is_ordered  # pymatgen's own reading of the file
    done = convert_file(make_source("mof"), str(PARTIAL))
    assert not done.samples
    (reject,) = done.rejects
    assert (reject.reason_code, reject.stage) == ("disordered_structure", "convert")
    assert "partial occupancies" in reject.reason


def test_job_accounts_for_every_cif(tmp_path):
    for path in [*MOF_DIR.glob("*.cif"), PARTIAL]:
        shutil.copy(path, tmp_path)
    (tmp_path / "not_a.cif").write_text("this is not a CIF\n")
    (tmp_path / "empty.cif").write_text("")
    source = make_source("mof")
    items = [entry for path in sorted(tmp_path.glob("*.cif")) for entry in source.read(str(path))]
    result = convert_items(source, default_tokenizer(), items)
    stats = result.stats
    assert stats.items_read == 8 == stats.items_written + stats.items_rejected
    assert stats.items_written == len(DECOMPOSABLE) == stats.records
    assert dict(stats.rejects_by_reason) == {"mof_charge_unbalanced": 1, "disordered_structure": 1,
                                             "invalid_cif": 1, "empty_file": 1}
    rudqud = next(r for r in result.rejects if r["reason_code"] == "mof_charge_unbalanced")
    assert rudqud["source_uri"].endswith("RUDQUD_clean.cif")
    assert {r["split_group"] for r in result.records} == {f"key:{r['dedup_key']}" for r in result.records}
    # The real split stage groups the records by that column.
    table = pa.Table.from_pylist(result.records, schema=SHARD_SCHEMA)
    split = assign_splits(SplitConfig(), table).records
    assert sorted(split["group"].to_list()) == sorted(f"key:{r['dedup_key']}" for r in result.records)
    # A MOF dedup key in an exclusion list (a benchmark's test frameworks) takes that framework out of train.
    zif8 = next(r for r in result.records if r["source_id"] == "ZIF-8-RASPA")
    decontaminated = assign_splits(SplitConfig(fractions=(1.0, 0.0, 0.0)), table, exclude=[zif8["dedup_key"]])
    assert decontaminated.excluded["source_id"].to_list() == ["ZIF-8-RASPA"]
    assert "ZIF-8-RASPA" not in decontaminated.records["source_id"].to_list()


def test_check_roundtrip_is_complete(tmp_path):
    for path in [*MOF_DIR.glob("*.cif"), PARTIAL]:
        shutil.copy(path, tmp_path)
    report = check_roundtrip("mof", [str(tmp_path)])
    material = report["domains"]["material"]
    assert material["valid"] == material["round_trip_ok"] == len(DECOMPOSABLE)
    assert material["rejected"] == {"disordered_structure": 1, "mof_charge_unbalanced": 1}
    assert material["read"] == material["valid"] + sum(material["rejected"].values()) == 6


def test_a_cif_with_several_data_blocks_gives_one_record_or_reject_each(tmp_path):
    path = tmp_path / "three_blocks.cif"
    path.write_text("".join((MOF_DIR / f"{name}.cif").read_text()
                            for name in ("ZIF-8-RASPA", "RUDQUD_clean", "qmof-fef756d")))
    done = convert_file(make_source("mof"), str(path))
    assert [s.source_id for s in done.samples] == ["three_blocks#1", "three_blocks#3"]
    assert [s.text for s in done.samples] == [sample_of("ZIF-8-RASPA").text, sample_of("qmof-fef756d").text]
    assert [(r.locator, r.reason_code) for r in done.rejects] == [("file structure 2", "mof_charge_unbalanced")]


def test_gzipped_cif_reads_the_same(tmp_path):
    path = tmp_path / "ZIF-8-RASPA.cif.gz"
    path.write_bytes(gzip.compress((MOF_DIR / "ZIF-8-RASPA.cif").read_bytes()))
    (sample,) = convert_file(make_source("mof"), str(path)).samples
    assert sample.source_id == "ZIF-8-RASPA" and sample.text == sample_of("ZIF-8-RASPA").text
