"""Real tokenized shards for the dataset-stage tests (dedup, split, mix, export, versions).

Built from the real files in tests/data with the grammar directly, laid out like the ingest engine's
output (``OUT/records/*.parquet`` with ``SHARD_SCHEMA``, ``OUT/rejects/*.parquet``). Duplicates are
planted across sources, and every planted pair is recorded in ``Shards.planted`` so the tests know
what must be found without asking the code under test.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import gemmi
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rdkit import Chem
from rdkit.Chem.MolStandardize import rdMolStandardize

from grammar.complex import Complex
from grammar.errors import GrammarError
from grammar.formats import FORMATS
from grammar.molecule import Molecule, inchikey
from grammar.protein import Protein
from grammar.reaction import Reaction
from grammar.tokenizer import default_tokenizer
from pipeline.records import (
    REJECT_SCHEMA,
    SHARD_SCHEMA,
    Reject,
    Sample,
    SourceItem,
    dedup_key,
    reject_row,
    shard_row,
)

DATA = Path(__file__).resolve().parents[1] / "data"
N_EGFR = 400  # molecules taken from the EGFR set (of 5,568): enough scaffolds, fast to build
N_USPTO = 300  # reactions taken from the USPTO-50k sample
PLANTED = "planted"  # the uri of rows this fixture wrote on purpose


@dataclass
class Planted:
    """Pairs of ``source_id``s the fixture made (or knows) to be related."""

    exact: list[tuple[str, str]] = field(default_factory=list)  # same canonical key
    near: list[tuple[str, str]] = field(default_factory=list)  # one or two point mutations apart
    homologs: list[tuple[str, str]] = field(default_factory=list)  # natural homologs (same protein family)


@dataclass
class Shards:
    root: Path  # an ingest-like output folder
    records: pl.DataFrame
    n_rejects: int
    planted: Planted
    uspto_rows: list[dict[str, str]]  # the USPTO rows used (for decontamination tests)


def _item(source: str, uri: Path | str, locator: str) -> SourceItem:
    return SourceItem(source, str(uri), locator, None)


def _molecule_sample(smiles: str, source_id: str, **metadata) -> Sample:
    molecule = Molecule.from_smiles(smiles, source_id)
    key = dedup_key("molecule", inchikey(molecule.smiles) or molecule.smiles)
    return Sample("molecule", "molecule", FORMATS["molecule"].write(molecule), source_id, key, metadata)


def molecule_samples(planted: Planted) -> Iterator[tuple[Sample, SourceItem]]:
    chemreps = DATA / "chembl" / "chembl_30_chemreps_100.txt"
    with chemreps.open() as handle:
        for n, row in enumerate(csv.DictReader(handle, delimiter="\t")):
            sample = _molecule_sample(row["canonical_smiles"], row["chembl_id"])
            yield sample, _item("chembl", chemreps, f"row {n}")
    egfr_path = DATA / "chembl" / "EGFR_compounds_teachopencadd.csv"
    with egfr_path.open() as handle:
        egfr = list(csv.DictReader(handle))[:N_EGFR]
    for n, row in enumerate(egfr):
        sample = _molecule_sample(row["smiles"], row["molecule_chembl_id"], pIC50=float(row["pIC50"]))
        yield sample, _item("chembl", egfr_path, f"row {n}")
    # The same molecules again from another source, written as random (non-canonical) SMILES.
    for row in egfr[:5]:
        rewritten = Chem.MolToRandomSmilesVect(Chem.MolFromSmiles(row["smiles"]), 1, randomSeed=7)[0]
        source_id = f"smiles:{row['molecule_chembl_id']}:random"
        yield _molecule_sample(rewritten, source_id), _item("smiles", PLANTED, "random SMILES")
        planted.exact.append((row["molecule_chembl_id"], source_id))
    # Tautomers: different canonical SMILES (so different text), same standard InChIKey.
    enumerator = rdMolStandardize.TautomerEnumerator()
    found = 0
    for row in egfr:
        mol = Chem.MolFromSmiles(row["smiles"])
        canonical, key = Chem.MolToSmiles(mol), inchikey(Chem.MolToSmiles(mol))
        for tautomer in enumerator.Enumerate(mol):
            smiles = Chem.MolToSmiles(tautomer)
            if smiles != canonical and inchikey(smiles) == key:
                source_id = f"smiles:{row['molecule_chembl_id']}:tautomer"
                yield _molecule_sample(smiles, source_id), _item("smiles", PLANTED, "tautomer")
                planted.exact.append((row["molecule_chembl_id"], source_id))
                found += 1
                break
        if found == 3:
            break


def _reaction_samples(reaction: Reaction, source_id: str, metadata: dict) -> Iterator[Sample]:
    reactants, products = (".".join(m.smiles for m in ms) for ms in (reaction.reactants, reaction.products))
    key = dedup_key("reaction", f"{reactants}>>{products}")
    for task in ("react", "reverse_react"):
        yield Sample("reaction", task, FORMATS[task].write(reaction), source_id, key, metadata)


def uspto_rows() -> list[dict[str, str]]:
    with (DATA / "uspto" / "USPTO_50K_sample.csv").open() as handle:
        return list(csv.DictReader(handle))[:N_USPTO]


def reaction_samples(planted: Planted, rows: list[dict[str, str]]) -> Iterator[tuple[Sample, SourceItem]]:
    path = DATA / "uspto" / "USPTO_50K_sample.csv"
    for n, row in enumerate(rows):
        patent = row["id"]
        # Application publications (US2009...) carry their year; grants do not.
        metadata = {"patent": patent, "class": int(row["class"])}
        if patent[2:6].isdigit() and patent.startswith("US") and len(patent) > 12:
            metadata["year"] = int(patent[2:6])
        reaction = Reaction.from_reaction_smiles(row["reactants>reagents>production"])
        for sample in _reaction_samples(reaction, f"{patent}#{n}", metadata):
            yield sample, _item("uspto", path, f"row {n}")
    # The same reactions from another dump, without atom maps and with reactants reordered.
    for n, row in enumerate(rows[:3]):
        reactants, _, products = row["reactants>reagents>production"].split(">")
        unmapped = [Chem.MolToSmiles(_unmapped(s)) for s in reactants.split(".")]
        text = ".".join(reversed(unmapped)) + ">>" + Chem.MolToSmiles(_unmapped(products))
        reaction = Reaction.from_reaction_smiles(text)
        source_id = f"lowe:{row['id']}#{n}"
        for sample in _reaction_samples(reaction, source_id, {"patent": row["id"]}):
            yield sample, _item("uspto", PLANTED, "reordered reaction")
        planted.exact.append((f"{row['id']}#{n}", source_id))


def _unmapped(smiles: str) -> Chem.Mol:
    mol = Chem.MolFromSmiles(smiles)
    for atom in mol.GetAtoms():
        atom.SetAtomMapNum(0)
    return mol


def protein_entities() -> Iterator[tuple[str, Path, str] | Reject]:
    """(entry_entity id, file, one-letter sequence) for every protein entity, or a Reject per bad file."""
    paths = sorted((DATA / "pdb" / "mmcif").glob("*.cif*")) + sorted((DATA / "pdb" / "legacy_pdb").glob("*"))
    for path in paths:
        try:
            structure = gemmi.read_structure(str(path))
        except (RuntimeError, ValueError) as exc:
            yield Reject("pdb", str(path), "file", "read", "unreadable_structure", str(exc))
            continue
        structure.setup_entities()
        for entity in structure.entities:
            if entity.polymer_type != gemmi.PolymerType.PeptideL:
                continue
            names = entity.full_sequence or [r.name for r in structure[0][entity.subchains[0]]]
            sequence = gemmi.one_letter_code(names).upper().replace("-", "X")
            if len(sequence) >= 3:  # the altloc edge case has a two-residue stub
                yield f"{path.name.split('.')[0]}_{entity.name}", path, sequence


def _protein_sample(protein: Protein, source_id: str) -> Sample:
    key = dedup_key("protein", "/".join(c.sequence for c in protein.chains))
    return Sample("protein", "protein", FORMATS["protein"].write(protein), source_id, key, {})


def point_mutant(sequence: str, positions: tuple[int, ...]) -> str:
    residues = list(sequence)
    for position in positions:
        residues[position] = "A" if residues[position] != "A" else "G"
    return "".join(residues)


def protein_samples(planted: Planted, rejects: list[Reject]) -> Iterator[tuple[Sample, SourceItem]]:
    sequences: dict[str, str] = {}
    for entry in protein_entities():
        if isinstance(entry, Reject):
            rejects.append(entry)
            continue
        source_id, path, sequence = entry
        sequences[source_id] = sequence
        yield _protein_sample(Protein.from_sequences(sequence), source_id), _item("pdb", path, "entity")
    lysozyme = sequences["1aki_1"]
    for name, positions in (("1aki_1:mut1", (40,)), ("1aki_1:mut2", (17, 90))):
        yield _protein_sample(Protein.from_sequences(point_mutant(lysozyme, positions)), name), _item(
            "pdb", PLANTED, "point mutant"
        )
        planted.near.append(("1aki_1", name))
    planted.homologs.append(("1hvr_A", "1k6p_1"))  # HIV-1 protease, 91% identical
    # Constructed complexes: real proteins with a real EGFR ligand; the pairing is made up. The split
    # tests only need a complex to follow its protein's cluster.
    ligand = Molecule.from_smiles("CCOc1cc2ncnc(Nc3cccc(Br)c3)c2cc1OCC")
    for protein_id in ("1k6p_1", "1hvr_A"):
        complex_ = Complex(Protein.from_sequences(sequences[protein_id]), ligand)
        text = FORMATS["complex_residue_smiles"].write(complex_)
        canonical = f"{sequences[protein_id]}|{inchikey(ligand.smiles)}|"
        key = dedup_key("complex", canonical)
        yield Sample("complex", "complex_residue_smiles", text, f"{protein_id}+egfr", key, {}), _item(
            "pdb", PLANTED, "constructed complex"
        )


def material_samples(planted: Planted, rejects: list[Reject]) -> Iterator[tuple[Sample, SourceItem]]:
    """Crystals from the pymatgen Structure JSONs, as the mp source writes them."""
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from grammar.material import Crystal
    from pipeline.records import material_group_key

    for path in sorted((DATA / "mp" / "structures").glob("*.json")):
        structure = Structure.from_dict(json.loads(path.read_text()))
        variants = [("", structure)]
        if path.stem == "TiO2":  # the same crystal again, in its conventional cell
            variants.append((":conventional", SpacegroupAnalyzer(structure).get_conventional_standard_structure()))
        if path.stem == "LiFePO4":  # the same crystal relaxed elsewhere: cell 1.5% larger, so other text
            strained = structure.copy()
            strained.scale_lattice(structure.volume * 1.015**3)
            variants.append((":strained", strained))
        for suffix, variant in variants:
            try:
                crystal = Crystal.from_structure(variant)
            except GrammarError as exc:  # e.g. partial occupancies: a reject, as the ingest engine makes
                rejects.append(Reject("mp", str(path), "structure", "convert", exc.reason_code, str(exc)))
                continue
            text = FORMATS["material"].write(crystal)
            group = int(re.search(r"<sg(\d+)>", text).group(1))  # the space group the grammar found
            key = material_group_key(variant.composition.reduced_formula, group)
            sample = Sample("material", "material", text, f"{path.stem}{suffix}", key, {})
            yield sample, _item("mp", path, "structure")
            if suffix:
                planted.exact.append((path.stem, f"{path.stem}{suffix}"))


def build_table(samples: list[tuple[Sample, SourceItem]]) -> pa.Table:
    ids = default_tokenizer().encode_batch([s.text for s, _ in samples])
    rows = [shard_row(sample, item, tokens) for (sample, item), tokens in zip(samples, ids, strict=True)]
    return pa.Table.from_pylist(rows, schema=SHARD_SCHEMA)


def write_ingest_output(root: Path) -> Shards:
    planted, rejects = Planted(), []
    rows = uspto_rows()
    groups = {
        "molecules": list(molecule_samples(planted)),
        "reactions": list(reaction_samples(planted, rows)),
        "proteins": list(protein_samples(planted, rejects)),
        "materials": list(material_samples(planted, rejects)),
    }
    (root / "records").mkdir(parents=True)
    (root / "rejects").mkdir()
    tables = []
    for name, samples in groups.items():
        if samples:
            table = build_table(samples)
            pq.write_table(table, root / "records" / f"{name}.parquet")
            tables.append(table)
    reject_table = pa.Table.from_pylist([reject_row(r) for r in rejects], schema=REJECT_SCHEMA)
    pq.write_table(reject_table, root / "rejects" / "rejects.parquet")
    summary = {"records": sum(t.num_rows for t in tables), "rejects": len(rejects)}
    (root / "summary.json").write_text(json.dumps(summary))
    return Shards(root, pl.from_arrow(pa.concat_tables(tables)), len(rejects), planted, rows)


@pytest.fixture(scope="session")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Shards:
    return write_ingest_output(tmp_path_factory.mktemp("ingest"))

