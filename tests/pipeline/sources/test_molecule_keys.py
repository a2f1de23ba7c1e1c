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
from rdkit import Chem
from rdkit.Chem.MolStandardize import rdMolStandardize

from pipeline.records import dedup_key
from pipeline.sources import make_source
from pipeline.sources.base import convert_file

DATA = Path(__file__).resolve().parents[2] / "data" / "chembl"
CHEMREPS = DATA / "chembl_30_chemreps_100.txt"
EGFR = DATA / "EGFR_compounds_teachopencadd.csv"
N_EGFR = 300

# The bare calls, in the order the record's keys need them: canonical SMILES re-read once (the grammar's fixed
# point; the default dedup key), the InChIKey of the first re-read molecule (``molecule_key=inchikey``), the
# scaffold of what a reader of the text parses back.
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
    inchikey = Chem.MolToInchiKey(reread) or text
    scaffold = MurckoScaffold.MurckoScaffoldSmiles(mol=Chem.MolFromSmiles(Chem.MolToSmiles(Chem.MolFromSmiles(text))))
    out.append([text, inchikey, scaffold])
json.dump(out, sys.stdout)
"""


def bare_library(smiles: list[str], standardize: bool) -> list[list[str] | None]:
    done = subprocess.run([sys.executable, "-c", REFERENCE, "standardize" if standardize else "plain"],
                          input=json.dumps(smiles), capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def expected_keys(reference: list[str] | None, molecule_key: str) -> tuple[str, str, str] | None:
    if reference is None:
        return None
    text, inchikey, scaffold = reference
    record_key = dedup_key("molecule", inchikey if molecule_key == "inchikey" else text)
    return f"<MoleculeS>{text}<MoleculeE>", record_key, f"scaffold:{scaffold}" if scaffold else f"acyclic:{record_key}"


@pytest.mark.parametrize(("standardize", "molecule_key"), [(False, None), (True, None), (False, "inchikey")],
                         ids=["smiles-source", "chembl-standardized", "smiles-source-inchikey"])
def test_molecule_keys_equal_the_bare_libraries(standardize: bool, molecule_key: str | None, tmp_path: Path) -> None:
    with CHEMREPS.open() as handle:
        rows = [(r["chembl_id"], r["canonical_smiles"]) for r in csv.DictReader(handle, delimiter="\t")]
    with EGFR.open() as handle:
        rows += [(r["molecule_chembl_id"], r["smiles"]) for _, r in zip(range(N_EGFR), csv.DictReader(handle),
                                                                        strict=False)]
    table = tmp_path / "molecules.csv"
    table.write_text("chembl_id,smiles\n" + "".join(f"{i},{s}\n" for i, s in rows))
    key_option = {"molecule_key": molecule_key} if molecule_key else {}  # None: the sources' default
    if standardize:
        source = make_source("chembl", key_option)
    else:
        source = make_source("smiles", {"column": "smiles", "id_column": "chembl_id", "standardize": False,
                                        **key_option})
    result = convert_file(source, table)
    got = {s.source_id: (s.text, s.dedup_key, s.split_group) for s in result.samples}
    expected = [expected_keys(r, molecule_key or "canonical_smiles") for r in bare_library([s for _, s in rows],
                                                                                          standardize)]
    assert len(result.items) == len(rows)
    for (chembl_id, _), keys in zip(rows, expected, strict=True):
        assert got.get(chembl_id) == keys, chembl_id
    assert len(got) == len(rows) - expected.count(None) > len(rows) * 0.9


# Identity, with ChEMBL's own tables as the reference: the chemreps file's standard InChIKey (made by ChEMBL from
# its molfile) and the ChEMBL id (one registered compound) say which inputs are one molecule, independently of
# RDKit's canonical SMILES that the default key is built from.


def chemreps_rows() -> list[dict[str, str]]:
    with CHEMREPS.open() as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def written_differently(smiles: str) -> list[str]:
    """The molecule as other tools write it: two random atom orders (aromatic) and one Kekulé random order."""
    mol = Chem.MolFromSmiles(smiles)
    return [*Chem.MolToRandomSmilesVect(mol, 2, randomSeed=7),
            *Chem.MolToRandomSmilesVect(mol, 1, randomSeed=11, kekuleSmiles=True)]


def smiles_keys(smiles: list[str], tmp_path: Path, **options: object) -> list[str]:
    """The dedup key the smiles source gives each SMILES (one table, default options unless given)."""
    table = tmp_path / f"molecules-{len(list(tmp_path.iterdir()))}.smi"
    table.write_text("".join(f"{s} m{i}\n" for i, s in enumerate(smiles)))
    result = convert_file(make_source("smiles", {"delimiter": " ", "id_column": 1, **options}), table)
    assert result.rejects == []
    keys = {s.source_id: s.dedup_key for s in result.samples}
    return [keys[f"m{i}"] for i in range(len(smiles))]


def test_default_key_merges_one_molecule_written_differently_and_nothing_else(tmp_path: Path) -> None:
    rows = chemreps_rows()
    inputs = [(row["standard_inchi_key"], written) for row in rows
              for written in [row["canonical_smiles"], *written_differently(row["canonical_smiles"])]]
    # The rewritings are the same compound by ChEMBL's InChIKey (InChI, not RDKit's canonicalization), and they
    # are really different texts: aromatic and Kekulé, other atom orders.
    assert all(Chem.MolToInchiKey(Chem.MolFromSmiles(s)) == truth for truth, s in inputs)
    assert len({s for _, s in inputs}) > 3.9 * len(rows)
    assert sum("c" not in s and "n" not in s for _, s in inputs) >= len(rows) * 0.9  # the Kekulé ones, mostly
    keys = smiles_keys([s for _, s in inputs], tmp_path)
    by_compound: dict[str, set[str]] = {}
    for (truth, _), key in zip(inputs, keys, strict=True):
        by_compound.setdefault(truth, set()).add(key)
    assert all(len(group) == 1 for group in by_compound.values())  # one molecule, one key
    assert len(set(keys)) == len(by_compound) == len(rows)  # different molecules, different keys


N_DISTINCT = 2000  # EGFR compounds (of 5,568) checked for distinct keys


def test_default_key_keeps_different_chembl_compounds_apart(tmp_path: Path) -> None:
    with EGFR.open() as handle:
        rows = list(csv.DictReader(handle))[:N_DISTINCT]
    keys = smiles_keys([row["smiles"] for row in rows], tmp_path)
    assert len({row["molecule_chembl_id"] for row in rows}) == len(rows)  # registered compounds, each once
    assert len(set(keys)) == len(rows)


@pytest.mark.parametrize("standardize", [True, False], ids=["standardized", "as-drawn"])
def test_a_chembl_compound_has_one_key_from_its_molblock_and_its_smiles(standardize: bool, tmp_path: Path) -> None:
    """The compounds in both the AZ pKa SDF export (ChEMBL 26 molblocks) and the EGFR set (ChEMBL SMILES),
    matched by ChEMBL id: the chembl source gives each one key from either file, and different ids different keys."""
    supplier = Chem.SDMolSupplier(str(DATA / "CHEMBL26_3301362_AZ_bpka.sdf"), sanitize=False)
    with EGFR.open() as handle:
        egfr = {row["molecule_chembl_id"]: row["smiles"] for row in csv.DictReader(handle)}
    shared = [i for i in range(len(supplier)) if supplier[i].GetProp("Molecule ChEMBL ID") in egfr]
    ids = [supplier[i].GetProp("Molecule ChEMBL ID") for i in shared]
    (tmp_path / "shared.sdf").write_text("".join(supplier.GetItemText(i) for i in shared))
    (tmp_path / "shared.csv").write_text("molecule_chembl_id,smiles\n" + "".join(f"{i},{egfr[i]}\n" for i in ids))
    source = make_source("chembl", {"standardize": standardize})
    from_sdf, from_csv = (convert_file(source, tmp_path / name) for name in ("shared.sdf", "shared.csv"))
    sdf_keys = {s.source_id: s.dedup_key for s in from_sdf.samples}
    csv_keys = {s.source_id: s.dedup_key for s in from_csv.samples}
    assert len(ids) == 5 and sdf_keys == csv_keys and set(sdf_keys) == set(ids)
    assert len(set(sdf_keys.values())) == len(ids)


# Genuine tautomers of chemreps molecules (RDKit's enumerator), ones whose standard InChIKey is ChEMBL's own for
# the molecule: InChI's mobile hydrogens make them one compound, as ChEMBL registers it (e.g. CHEMBL153534's
# guanidine written as the imine N=C(N)N vs =NC(=N)N on a thiazoline, CHEMBL155287's hydroxamic acid
# O=C(NO)- vs its ON=C(O)- form). Two tautomers are two texts, so the default key keeps them apart;
# ``molecule_key=inchikey`` merges them.
N_TAUTOMERS = 5


def chembl_tautomers() -> list[tuple[str, str, str]]:
    """(ChEMBL id, ChEMBL's SMILES, a tautomer with ChEMBL's InChIKey) for the first ``N_TAUTOMERS`` molecules
    that have one."""
    enumerator = rdMolStandardize.TautomerEnumerator()
    found = []
    for row in chemreps_rows():
        mol = Chem.MolFromSmiles(row["canonical_smiles"])
        if mol.GetNumAtoms() > 40:  # enumeration grows fast with size; the small ones are plenty
            continue
        canonical = Chem.MolToSmiles(mol)
        tautomer = next((Chem.MolToSmiles(t) for t in enumerator.Enumerate(mol)
                         if Chem.MolToSmiles(t) != canonical and Chem.MolToInchiKey(t) == row["standard_inchi_key"]),
                        None)
        if tautomer is not None:
            found.append((row["chembl_id"], row["canonical_smiles"], tautomer))
        if len(found) == N_TAUTOMERS:
            return found
    raise AssertionError(f"only {len(found)} tautomers found")


def test_tautomers_merge_with_the_inchikey_option_only(tmp_path: Path) -> None:
    pairs = chembl_tautomers()
    inputs = [s for _, chembl, tautomer in pairs for s in (chembl, tautomer)]
    default = smiles_keys(inputs, tmp_path)
    inchikey = smiles_keys(inputs, tmp_path, molecule_key="inchikey")
    assert all(inchikey[i] == inchikey[i + 1] for i in range(0, len(inputs), 2))
    assert len(set(inchikey)) == len(pairs)
    assert len(set(default)) == len(inputs)  # each tautomer its own record by default
