"""``logos check roundtrip --json`` on the real fixtures of every source."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"

CASES = {
    "pdb": ([DATA / "pdb/mmcif", DATA / "pdb/legacy_pdb"], {"protein", "pocket", "complex"}),
    "chembl": ([DATA / "chembl/chembl_30_chemreps_100.txt", DATA / "chembl/CHEMBL26_3301362_AZ_bpka.sdf"],
               {"molecule"}),
    "uspto": ([DATA / "uspto"], {"reaction"}),
    "mp": ([DATA / "mp/structures", DATA / "mp/mp_20_sample.csv", DATA / "mp/Si_mp_149.cif"], {"material"}),
}


@pytest.mark.parametrize("source", sorted(CASES))
def test_roundtrip_report(source):
    inputs, domains = CASES[source]
    result = subprocess.run(
        [sys.executable, "-m", "workflows.cli", "check", "roundtrip", "--source", source, *map(str, inputs), "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert set(report["domains"]) == domains
    for counts in report["domains"].values():
        assert counts["read"] == counts["valid"] + sum(counts["rejected"].values())
        assert counts["round_trip_ok"] == counts["valid"] > 0  # every valid record decodes to its source object
    if source == "mp":
        assert report["domains"]["material"]["rejected"] == {"disordered_structure": 1}  # Li10GeP2S12
    if source == "pdb":
        assert report["domains"]["protein"]["rejected"]["no_protein_chain"] >= 1  # 1bna, DNA only
