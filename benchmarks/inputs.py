"""Benchmark inputs that work from a clean clone: the MOSES scale set when ``../shared`` has it, else the
SMILES bundled in ``tests/data`` (ChEMBL samples), with a printed line whenever the input is smaller than
asked for, so a figure is never read as measured on data it was not measured on."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

from rdkit import Chem, RDLogger

ROOT = Path(__file__).resolve().parents[1]
MOSES = ROOT.parent / "shared/data/scale/moses_train_smiles.csv.gz"
BUNDLED = ROOT / "tests/data/chembl"


def bundled_smiles() -> list[str]:
    """The distinct RDKit-valid SMILES of the bundled ChEMBL samples (EGFR export, chemreps, SDF), in file order."""
    smiles: list[str] = []
    with open(BUNDLED / "EGFR_compounds_teachopencadd.csv") as handle:
        smiles += [row["smiles"] for row in csv.DictReader(handle)]
    with open(BUNDLED / "chembl_30_chemreps_100.txt") as handle:
        smiles += [row["canonical_smiles"] for row in csv.DictReader(handle, delimiter="\t")]
    RDLogger.DisableLog("rdApp.*")
    supplier = Chem.SDMolSupplier(str(BUNDLED / "CHEMBL26_3301362_AZ_bpka.sdf"))
    smiles += [Chem.MolToSmiles(mol) for mol in supplier if mol is not None]
    return list(dict.fromkeys(s for s in smiles if s))


def smiles_rows(rows: int, what: str = "SMILES") -> list[str]:
    """Up to ``rows`` SMILES: MOSES when present, else the bundled ones; says so when fewer than asked."""
    if MOSES.exists():
        with gzip.open(MOSES, "rt") as handle:
            next(handle)
            smiles = [line.strip() for _, line in zip(range(rows), handle, strict=False)]
        source = f"MOSES ({MOSES.name})"
    else:
        smiles = bundled_smiles()[:rows]
        source = f"the bundled ChEMBL samples ({MOSES} not found)"
    if len(smiles) < rows:
        print(f"# smaller input: {len(smiles):,} {what} from {source}, not the {rows:,} asked for")
    else:
        print(f"# input: {len(smiles):,} {what} from {source}")
    return smiles
