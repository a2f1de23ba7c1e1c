"""Tokenized shards for the dataset-stage tests (dedup, split, mix, export, versions), made by the real sources.

Each source of ``pipeline.sources`` reads real files from tests/data, and ``pipeline.convert.convert_items``
(the ingest engine's per-chunk conversion, without Ray) turns what it read into shard rows and rejects; they are
laid out as the engine writes them (``OUT/records/*.parquet`` with ``SHARD_SCHEMA``, ``OUT/rejects/*.parquet``,
``OUT/summary.json``). So the records carry what ingest writes today: metadata keys, years, group columns and
dedup keys come from the sources themselves, never from this file.

Duplicates are planted on top as further input files that the same sources read (a random SMILES and a
tautomer of ChEMBL molecules, USPTO reactions with their reactants in another order, point mutants of a PDB
protein, a crystal in another cell or relaxed elsewhere), and every planted pair is recorded in
``Shards.planted`` so the tests know what must be found without asking the code under test. The molecule
sources use the InChIKey as their exact-dedup key (``molecule_key: inchikey``, one choice for the whole
dataset), so tautomers are duplicates.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rdkit import Chem
from rdkit.Chem.MolStandardize import rdMolStandardize

from grammar.formats import FORMATS
from grammar.tokenizer import default_tokenizer
from pipeline.convert import convert_items
from pipeline.records import REJECT_SCHEMA, SHARD_SCHEMA
from pipeline.sources import make_source

DATA = Path(__file__).resolve().parents[1] / "data"
N_EGFR = 400  # molecules taken from the EGFR set (of 5,568): enough scaffolds, fast to convert
N_USPTO = 300  # reactions taken from the USPTO-50k sample
MOLECULE_KEY = {"molecule_key": "inchikey"}  # tautomers are one molecule (see the module docstring)
PROTEIN_TASKS = {"tasks": ["protein", "complex_residue_smiles"]}  # proteins and their ligand complexes
PLANTED_MUTANTS = (("lysozyme-mut1", (40,)), ("lysozyme-mut2", (17, 90)))  # point mutants of 1AKI:A


@dataclass
class Planted:
    """Pairs of ``source_id``s the fixture made (or knows) to be related."""

    exact: list[tuple[str, str]] = field(default_factory=list)  # same canonical key
    near: list[tuple[str, str]] = field(default_factory=list)  # one or two point mutations apart
    homologs: list[tuple[str, str]] = field(default_factory=list)  # natural homologs (same protein family)


@dataclass
class Shards:
    root: Path  # an ingest output folder
    records: pl.DataFrame
    n_rejects: int
    planted: Planted
    uspto_rows: list[dict[str, str]]  # the USPTO rows used (for decontamination tests)


@dataclass
class Ingested:
    """What the real sources made of some inputs: shard rows and reject rows."""

    records: list[pa.Table] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)

    def add(self, source_name: str, paths: list[Path], options: dict[str, Any] | None = None) -> pl.DataFrame:
        source = make_source(source_name, options)
        items = [item for path in paths for item in source.read(str(path))]
        result = convert_items(source, default_tokenizer(), items)
        self.rejects += result.rejects
        table = result.records_table()
        if table is None:
            return pl.DataFrame(schema=pl.from_arrow(SHARD_SCHEMA.empty_table()).schema)
        self.records.append(table)
        return pl.from_arrow(table)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(self.records), path, compression="zstd")


def head_rows(path: Path, n: int, out: Path) -> Path:
    """The header and first ``n`` rows of a CSV, as a file the sources read (the test data, cut short)."""
    with path.open() as handle:
        lines = [next(handle) for _ in range(n + 1)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(lines))
    return out


def planted_molecules(chembl: pl.DataFrame, planted: Planted, out: Path) -> Path:
    """The same ChEMBL molecules as another source writes them: random (non-canonical) SMILES, and tautomers
    (other canonical SMILES, so other text, with the same standard InChIKey)."""
    smiles = {sid: FORMATS["molecule"].parse(text).smiles for sid, text in zip(chembl["source_id"], chembl["text"],
                                                                                 strict=True)}
    rows = []
    for chembl_id in list(smiles)[:5]:
        rewritten = Chem.MolToRandomSmilesVect(Chem.MolFromSmiles(smiles[chembl_id]), 1, randomSeed=7)[0]
        rows.append((f"smiles:{chembl_id}:random", rewritten))
        planted.exact.append((chembl_id, rows[-1][0]))
    enumerator = rdMolStandardize.TautomerEnumerator()
    for chembl_id, canonical in smiles.items():
        mol = Chem.MolFromSmiles(canonical)
        key = Chem.MolToInchiKey(mol)
        tautomer = next((s for t in enumerator.Enumerate(mol) if (s := Chem.MolToSmiles(t)) != Chem.MolToSmiles(mol)
                         and Chem.MolToInchiKey(t) == key), None)
        if tautomer is not None:
            rows.append((f"smiles:{chembl_id}:tautomer", tautomer))
            planted.exact.append((chembl_id, rows[-1][0]))
        if sum(sid.endswith(":tautomer") for sid, _ in rows) == 3:
            break
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "smiles"])
        writer.writerows(rows)
    return out


def planted_reactions(rows: list[dict[str, str]], planted: Planted, out: Path) -> Path:
    """The first USPTO reactions again, as another dump writes them: reactants in reverse order."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "class", "reactants>reagents>production"])
        for n, row in enumerate(rows[:3], start=1):
            reactants, reagents, products = row["reactants>reagents>production"].split(">")
            reordered = ".".join(reversed(reactants.split(".")))
            writer.writerow([f"lowe-{row['id']}", row["class"], f"{reordered}>{reagents}>{products}"])
            planted.exact.append((f"{row['id']}:row {n}", f"lowe-{row['id']}:row {n}"))
    return out


def point_mutant(sequence: str, positions: tuple[int, ...]) -> str:
    residues = list(sequence)
    for position in positions:
        residues[position] = "A" if residues[position] != "A" else "G"
    return "".join(residues)


def planted_mutants(pdb: pl.DataFrame, planted: Planted, out: Path) -> Path:
    """Point mutants of hen lysozyme (1AKI:A) as a FASTA file; the natural homologs are recorded too."""
    text = pdb.filter((pl.col("source_id") == "1AKI:A") & (pl.col("task") == "protein"))["text"].item()
    lysozyme = "".join(chain.sequence for chain in FORMATS["protein"].parse(text).chains)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f">{name} hen lysozyme point mutant\n{point_mutant(lysozyme, positions)}\n"
                           for name, positions in PLANTED_MUTANTS))
    planted.homologs.append(("1HVR:A", "1K6P:A"))  # HIV-1 protease, 91% identical
    return out


def planted_crystals(out: Path) -> list[Path]:
    """TiO2 in its conventional cell, and LiFePO4 relaxed elsewhere (cell 1.5% larger, so other text), as
    pymatgen Structure JSON files the mp source reads."""
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    structures = DATA / "mp" / "structures"
    titania = Structure.from_dict(json.loads((structures / "TiO2.json").read_text()))
    olivine = Structure.from_dict(json.loads((structures / "LiFePO4.json").read_text()))
    strained = olivine.copy()
    strained.scale_lattice(olivine.volume * 1.015**3)
    variants = {"TiO2_conventional": SpacegroupAnalyzer(titania).get_conventional_standard_structure(),
                "LiFePO4_strained": strained}
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, structure in variants.items():
        paths.append(out / f"{name}.json")
        paths[-1].write_text(json.dumps(structure.as_dict()))
    return paths


def uspto_rows() -> list[dict[str, str]]:
    with (DATA / "uspto" / "USPTO_50K_sample.csv").open() as handle:
        return list(csv.DictReader(handle))[:N_USPTO]


def write_ingest_output(root: Path, inputs: Path) -> Shards:
    planted, rows = Planted(), uspto_rows()
    molecules, reactions, proteins, materials = Ingested(), Ingested(), Ingested(), Ingested()
    chembl = molecules.add("chembl", [DATA / "chembl" / "chembl_30_chemreps_100.txt"], MOLECULE_KEY)
    egfr = head_rows(DATA / "chembl" / "EGFR_compounds_teachopencadd.csv", N_EGFR, inputs / "egfr.csv")
    molecules.add("smiles", [egfr], {"column": "smiles", "id_column": "molecule_chembl_id", **MOLECULE_KEY})
    molecules.add("smiles", [planted_molecules(chembl, planted, inputs / "planted" / "molecules.csv")],
                  {"column": "smiles", "id_column": "id", **MOLECULE_KEY})
    uspto = head_rows(DATA / "uspto" / "USPTO_50K_sample.csv", N_USPTO, inputs / "uspto_50k.csv")
    reactions.add("uspto", [uspto, planted_reactions(rows, planted, inputs / "planted" / "reactions.csv")])
    structures = sorted((DATA / "pdb" / "mmcif").glob("*.cif*")) + sorted((DATA / "pdb" / "legacy_pdb").glob("*"))
    pdb = proteins.add("pdb", structures, PROTEIN_TASKS)
    mutants = proteins.add("uniprot", [planted_mutants(pdb, planted, inputs / "planted" / "mutants.fasta")])
    planted.near += [("1AKI:A", source_id) for source_id in mutants["source_id"]]
    crystals = planted_crystals(inputs / "planted" / "crystals")
    made = materials.add("mp", sorted((DATA / "mp" / "structures").glob("*.json")) + crystals)
    for path in crystals:  # the id the source gave the original (the file's material id, else its name)
        original = made.filter(pl.col("source_uri").str.ends_with(f"/{path.stem.split('_')[0]}.json"))["source_id"]
        planted.exact.append((original.item(), path.stem))
    for name, ingested in (("molecules", molecules), ("reactions", reactions), ("proteins", proteins),
                           ("materials", materials)):
        ingested.write(root / "records" / f"{name}.parquet")
    rejects = [r for ingested in (molecules, reactions, proteins, materials) for r in ingested.rejects]
    (root / "rejects").mkdir()
    pq.write_table(pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA), root / "rejects" / "rejects.parquet")
    records = pl.concat([pl.read_parquet(p) for p in sorted((root / "records").glob("*.parquet"))])
    (root / "summary.json").write_text(json.dumps({"records": records.height, "rejects": len(rejects)}))
    return Shards(root, records, len(rejects), planted, rows)


def iter_planted(shards: Shards) -> Iterator[str]:
    for pairs in (shards.planted.exact, shards.planted.near, shards.planted.homologs):
        for pair in pairs:
            yield from pair


@pytest.fixture(scope="session")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Shards:
    made = write_ingest_output(tmp_path_factory.mktemp("ingest"), tmp_path_factory.mktemp("inputs"))
    missing = sorted(set(iter_planted(made)) - set(made.records["source_id"]))
    assert not missing, f"planted records the sources did not make: {missing}"
    return made
