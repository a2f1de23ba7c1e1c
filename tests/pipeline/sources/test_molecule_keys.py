"""Every key of a molecule record (text, dedup key, split group) from the one parse the source makes equals
what the bare libraries give: RDKit and the ChEMBL Structure Pipeline, run unpatched in a separate
interpreter that never imports logos (the ChEMBL source memoizes the pipeline's SMARTS patterns in-process)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.records import dedup_key
from pipeline.sources import make_source
from pipeline.sources.base import convert_file

DATA = Path(__file__).resolve().parents[2] / "data" / "chembl"
CHEMREPS = DATA / "chembl_30_chemreps_100.txt"
EGFR = DATA / "EGFR_compounds_teachopencadd.csv"
N_EGFR = 300

# The bare calls, in the order the record's keys need them: canonical SMILES re-read once (the grammar's fixed
# point), the InChIKey of the first re-read molecule, the scaffold of what a reader of the text parses back.
REFERENCE = r"""
import json, sys
from rdkit import Chem, RDLogger
from rdkit.Chem.Scaffolds import MurckoScaffold
from chembl_structure_pipeline import standardizer
from chembl_structure_pipeline.exclude_flag import exclude_flag
RDLogger.DisableLog("rdApp.*")
standardize = sys.argv[1] == "standardize"
out = []
for raw in json.load(sys.stdin):
    mol = Chem.MolFromSmiles(raw)
    if standardize:
        if exclude_flag(mol, includeRDKitSanitization=False):
            out.append(None)
            continue
        mol = standardizer.get_parent_mol(standardizer.standardize_mol(mol, check_exclusion=False))[0]
    first = Chem.MolToSmiles(mol)
    reread = Chem.MolFromSmiles(first)
    text = Chem.MolToSmiles(reread)
    key = Chem.MolToInchiKey(reread) or text
    scaffold = MurckoScaffold.MurckoScaffoldSmiles(mol=Chem.MolFromSmiles(Chem.MolToSmiles(Chem.MolFromSmiles(text))))
    out.append([text, key, scaffold])
json.dump(out, sys.stdout)
"""


def bare_library(smiles: list[str], standardize: bool) -> list[list[str] | None]:
    done = subprocess.run([sys.executable, "-c", REFERENCE, "standardize" if standardize else "plain"],
                          input=json.dumps(smiles), capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def expected_keys(reference: list[str] | None) -> tuple[str, str, str] | None:
    if reference is None:
        return None
    text, key, scaffold = reference
    record_key = dedup_key("molecule", key)
    return f"<MoleculeS>{text}<MoleculeE>", record_key, f"scaffold:{scaffold}" if scaffold else f"acyclic:{record_key}"


@pytest.mark.parametrize("standardize", [False, True], ids=["smiles-source", "chembl-standardized"])
def test_molecule_keys_equal_the_bare_libraries(standardize: bool, tmp_path: Path) -> None:
    with CHEMREPS.open() as handle:
        rows = [(r["chembl_id"], r["canonical_smiles"]) for r in csv.DictReader(handle, delimiter="\t")]
    with EGFR.open() as handle:
        rows += [(r["molecule_chembl_id"], r["smiles"]) for _, r in zip(range(N_EGFR), csv.DictReader(handle),
                                                                        strict=False)]
    table = tmp_path / "molecules.csv"
    table.write_text("chembl_id,smiles\n" + "".join(f"{i},{s}\n" for i, s in rows))
    if standardize:
        source = make_source("chembl", {})
    else:
        source = make_source("smiles", {"column": "smiles", "id_column": "chembl_id", "standardize": False})
    result = convert_file(source, table)
    got = {s.source_id: (s.text, s.dedup_key, s.split_group) for s in result.samples}
    expected = [expected_keys(r) for r in bare_library([s for _, s in rows], standardize)]
    assert len(result.items) == len(rows)
    for (chembl_id, _), keys in zip(rows, expected, strict=True):
        assert got.get(chembl_id) == keys, chembl_id
    assert len(got) == len(rows) - expected.count(None) > len(rows) * 0.9
