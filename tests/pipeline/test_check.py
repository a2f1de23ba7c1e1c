"""``logos check roundtrip --json`` on the real fixtures of every source."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from grammar.material import Crystal
from pipeline.sources.mp import MpSource
from workflows.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"

CASES = {
    "pdb": ([DATA / "pdb/mmcif", DATA / "pdb/legacy_pdb"], {"protein", "pocket", "complex"}),
    "chembl": ([DATA / "chembl/chembl_30_chemreps_100.txt", DATA / "chembl/CHEMBL26_3301362_AZ_bpka.sdf"],
               {"molecule"}),
    "uspto": ([DATA / "uspto"], {"reaction"}),
    "mp": ([DATA / "mp/structures", DATA / "mp/mp_20_sample.csv", DATA / "mp/Si_mp_149.cif",
            DATA / "mp/emmet_materials_Li_Fe_V.json.gz"], {"material"}),
    "uniprot": ([DATA / "uniprot"], {"protein"}),
    "mof": ([DATA / "mp/mof", DATA / "mof"], {"material"}),
    # OAS-layout units and a structure file (its antibodies found by numbering); SAbDab rows need -o structures_path
    "antibody": ([DATA / "antibody/oas_paired_layout_from_sabdab_structures.csv.gz",
                  DATA / "antibody/oas_unpaired_layout_from_sabdab_structures.csv",
                  DATA / "antibody/structures/1kb5.pdb.gz"],
                 {"antibody"}),
}


@pytest.mark.parametrize("source", sorted(CASES))
def test_roundtrip_report(source, tmp_path):
    inputs, domains = CASES[source]
    failures = tmp_path / "failures.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "workflows.cli", "check", "roundtrip", "--source", source, *map(str, inputs), "--json",
         "--failures", str(failures)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert failures.read_text() == ""  # written, and empty: every record the source wrote round-trips
    report = json.loads(result.stdout)
    assert report["failures"] == 0
    assert set(report["domains"]) == domains
    for counts in report["domains"].values():
        assert counts["read"] == counts["valid"] + sum(counts["rejected"].values())
        assert counts["round_trip_ok"] == counts["valid"] > 0  # every valid record decodes to its source object
    if source == "mp":
        # Every ordered structure of the bundled MP samples (103 of 104; Li10GeP2S12 is disordered) round-trips
        # under crystals_match; the 21 emmet documents hold low-symmetry Li-Fe-V-O cells.
        assert report["domains"]["material"]["rejected"] == {"disordered_structure": 1}  # Li10GeP2S12
        assert report["domains"]["material"]["valid"] == 103
    if source == "pdb":
        assert report["domains"]["protein"]["rejected"]["no_protein_chain"] >= 1  # 1bna, DNA only
    if source == "mof":  # RUDQUD_clean lacks its counter-ions; the built partial-occupancy copy of ABAVIJ
        assert report["domains"]["material"]["rejected"] == {"mof_charge_unbalanced": 1, "disordered_structure": 1}
        assert report["domains"]["material"]["valid"] == 4


def stretched(structure: Structure) -> Structure:
    """The cell stretched x1.6 along a: after StructureMatcher's volume scaling a x1.37, b and c x0.86,
    beyond its 0.2 length tolerance, so not the same crystal."""
    changed = structure.copy()
    changed.lattice = Lattice(changed.lattice.matrix * np.array([[1.6], [1.0], [1.0]]))
    return changed


def swapped(structure: Structure) -> Structure:
    """The species of the first Li and the first Fe site exchanged (LiFePO4 holds four of each)."""
    changed = structure.copy()
    li = next(i for i, site in enumerate(structure) if site.specie.symbol == "Li")
    fe = next(i for i, site in enumerate(structure) if site.specie.symbol == "Fe")
    changed.replace(li, "Fe")
    changed.replace(fe, "Li")
    return changed


@pytest.mark.parametrize("change", [stretched, swapped])
def test_a_different_structure_fails_and_is_listed(change, tmp_path, monkeypatch, capsys):
    """A record whose text was written from one structure but whose source object is another (strained cell,
    swapped species) fails the round trip, is listed in the failures file, and the command exits 1."""
    original = MpSource._sample

    def sample_with_a_different_source(self, structure, source_id, metadata):
        sample = original(self, structure, source_id, metadata)
        different = Crystal(change(structure), source_id)
        return dataclasses.replace(sample, obj=different)

    monkeypatch.setattr(MpSource, "_sample", sample_with_a_different_source)
    failures = tmp_path / "failures.jsonl"
    path = DATA / "mp/structures/LiFePO4.json"
    code = main(["check", "roundtrip", "--source", "mp", str(path), "--failures", str(failures)])
    assert code == 1
    assert "1 records failed the round trip" in capsys.readouterr().err
    rows = [json.loads(line) for line in failures.read_text().splitlines()]
    assert [(r["file"], r["id"], r["task"], r["reason"]) for r in rows] == [
        (str(path), "LiFePO4", "material", "decoded_object_differs")]
    assert rows[0]["locator"]
