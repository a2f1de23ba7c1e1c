"""The PDB source on the real wwPDB fixtures: records per entry, texts, metadata, policies and bad input.

Expectations come from each file's own tables, read here with gemmi's CIF reader (``_entity_poly``,
``_entity_poly_seq``, ``_pdbx_nonpoly_scheme``, ``_chem_comp``, ``_pdbx_poly_seq_scheme``,
``_struct_conn``), or from SEQRES records parsed here; never from the source's own output.
"""

from __future__ import annotations

import gzip
import re
from collections import Counter
from functools import cache
from pathlib import Path

import gemmi
import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import rdMolDescriptors

from grammar.formats import FORMATS
from grammar.protein import RESIDUE_ALPHABET
from grammar.tokenizer import default_tokenizer
from pipeline.options import ConfigError
from pipeline.records import Reject, Sample, SourceItem
from pipeline.sources import make_source
from pipeline.sources.base import Source, convert_file
from pipeline.sources.ccd import CCD_BUNDLED, CCD_USER, PERCEIVED
from pipeline.sources.pdb import ALL_TASKS, DEFAULT_EXCLUDED, PdbConfig, PdbSource
from pipeline.sources.pdb_structure import load_entry

DATA = Path(__file__).resolve().parents[2] / "data" / "pdb"
ALL_FILES = sorted((DATA / "mmcif").iterdir()) + sorted((DATA / "legacy_pdb").iterdir())
SUBSET = DATA / "ccd" / "components_subset_converted_from_biotite_bcif.cif"
STANDARD = {
    "ALA": "A", "ARG": "R", "ASN": "N", "ASP": "D", "CYS": "C", "GLN": "Q", "GLU": "E", "GLY": "G", "HIS": "H",
    "ILE": "I", "LEU": "L", "LYS": "K", "MET": "M", "PHE": "F", "PRO": "P", "SER": "S", "THR": "T", "TRP": "W",
    "TYR": "Y", "VAL": "V",
}
LIGAND_TASKS = [t for t in ALL_TASKS if t != "protein"]


def run(source: Source, path: Path | str) -> tuple[list[SourceItem], list[Sample], list[Reject]]:
    """What the ingest engine does with one file: read, convert each item."""
    done = convert_file(source, str(path))
    return done.items, done.samples, done.rejects


@cache
def default_run(name: str) -> tuple[list[SourceItem], list[Sample], list[Reject]]:
    path = next(p for p in ALL_FILES if p.name == name)
    return run(PdbSource(), path)


@cache
def run_keeping_biolip_listed_ligands(name: str) -> tuple[list[SourceItem], list[Sample], list[Reject]]:
    """BioLiP's artefact list names 4I39's chromophore HC4 and 5H73's orotate ORO; kept here."""
    path = next(p for p in ALL_FILES if p.name == name)
    return run(PdbSource(PdbConfig(excluded_components=DEFAULT_EXCLUDED - {"HC4", "ORO"})), path)


def block_of(path: Path) -> gemmi.cif.Block:
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    return gemmi.cif.read_string(text).sole_block()


def table(block: gemmi.cif.Block, category: str, columns: list[str]) -> list[list[str]]:
    return [[row.str(i) for i in range(len(columns))] for row in block.find(category, columns)]


# --- records per entry --------------------------------------------------------------------------------

ENTRIES = [p.name for p in sorted((DATA / "mmcif").iterdir()) if p.name.startswith(("1", "3", "4", "5", "7"))]


@cache
def ccd_chem_comp() -> dict[str, tuple[str, str]]:
    """CCD id -> (one_letter_code, mon_nstd_parent_comp_id), read straight from biotite's bundled CCD."""
    from biotite.structure.info.ccd import get_ccd

    table = get_ccd()["chem_comp"]
    columns = [table[c].as_array().tolist() for c in ("id", "one_letter_code", "mon_nstd_parent_comp_id")]
    return {i: (code, parent) for i, code, parent in zip(*columns, strict=True)}


def with_current_ccd_parents(sequence: str, monomers: list[str]) -> str:
    """An X of the entry's canonical sequence becomes the parent's letter where today's CCD gives a parent
    (BP5 in 5EIL got parent ALA in 2024, after the entry's canonical sequence was written)."""
    if len(monomers) != len(sequence):
        return sequence
    letters = list(sequence)
    for i, mon in enumerate(monomers):
        code, parent = ccd_chem_comp().get(mon, ("?", "?"))
        if letters[i] == "X" and code == "?" and parent in ccd_chem_comp():
            letters[i] = ccd_chem_comp()[parent][0]
    return "".join(letters)


def expected_proteins(block: gemmi.cif.Block) -> dict[str, set[str]]:
    """Canonical sequence -> author chain ids, for polypeptide(L) entities that pass the default filters
    (>= 5 residues; at most half of them outside the 20 standard amino acids)."""
    monomers: dict[str, list[str]] = {}
    for entity_id, mon_id in table(block, "_entity_poly_seq.", ["entity_id", "mon_id"]):
        monomers.setdefault(entity_id, []).append(mon_id)
    found: dict[str, set[str]] = {}
    rows = table(block, "_entity_poly.", ["entity_id", "type", "pdbx_seq_one_letter_code_can", "pdbx_strand_id"])
    for entity_id, kind, sequence, strands in rows:
        sequence = "".join(c if c in RESIDUE_ALPHABET else "X" for c in re.sub(r"\s", "", sequence))
        sequence = with_current_ccd_parents(sequence, monomers[entity_id])
        nonstandard = sum(m not in STANDARD for m in monomers[entity_id])
        if kind == "polypeptide(L)" and len(sequence) >= 5 and nonstandard <= len(sequence) / 2:
            found.setdefault(sequence, set()).update(strands.split(","))
    return found


@pytest.mark.parametrize("name", [n for n in ENTRIES if "invalid" not in n])
def test_protein_records_are_the_entity_sequences(name: str) -> None:
    _, samples, _ = default_run(name)
    proteins = {FORMATS["protein"].parse(s.text).chains[0].sequence: set(s.metadata["chain_ids"])
                for s in samples if s.task == "protein"}
    assert proteins == expected_proteins(block_of(DATA / "mmcif" / name))


def nonpoly_instances(block: gemmi.cif.Block) -> list[tuple[str, str]]:
    """(author residue id, component id) of each non-polymer instance, waters dropped."""
    rows = table(block, "_pdbx_nonpoly_scheme.", ["pdb_strand_id", "pdb_seq_num", "pdb_ins_code", "mon_id"])
    return [(f"{c}:{n}{'' if i in ('.', '?') else i}", m) for c, n, i, m in rows if m != "HOH"]


def heavy_atoms_in_formula(block: gemmi.cif.Block, ccd_id: str) -> int:
    formulas = dict(table(block, "_chem_comp.", ["id", "formula"]))
    counts = re.findall(r"([A-Z][a-z]?)(\d*)", formulas[ccd_id].title().replace(" ", ""))
    return sum(int(n or 1) for element, n in counts if element not in ("H", "D"))


@pytest.mark.parametrize("name", [n for n in ENTRIES if "invalid" not in n])
def test_ligand_samples_follow_the_nonpolymer_table(name: str) -> None:
    """Every non-polymer instance outside the excluded list with >= 2 heavy atoms gives the seven ligand
    samples (all fixture ligands touch their protein); the rest are counted as skipped."""
    block = block_of(DATA / "mmcif" / name)
    _, samples, rejects = default_run(name)
    if not any(s.task == "protein" for s in samples):
        return  # no protein chain: covered by the DNA tests
    expected, skipped = set(), Counter()
    for instance, ccd_id in nonpoly_instances(block):
        if ccd_id in DEFAULT_EXCLUDED:
            skipped["excluded_component", ccd_id] += 1
        elif heavy_atoms_in_formula(block, ccd_id) < 2:
            skipped["too_few_heavy_atoms", ccd_id] += 1
        else:
            expected.add((instance, ccd_id))
    by_task = Counter(s.task for s in samples)
    pockets = {(s.metadata["ligand_instance"], s.metadata["ligand_ccd_id"]) for s in samples if s.task == "pocket"}
    assert pockets == expected
    assert all(by_task[task] == len(expected) for task in LIGAND_TASKS)
    protein_meta = next(s.metadata for s in samples if s.task == "protein")
    reported = Counter({(why, ccd): n for why, counts in protein_meta["ligands_skipped"].items()
                        for ccd, n in counts.items() if why != "glycan"})
    assert reported == skipped
    assert not [r for r in rejects if "ligand" in r.locator]


def test_glycans_are_skipped_by_default_and_kept_on_request() -> None:
    """1IGY's two N-glycans (branched entities, linked to ASN 314 in _struct_conn) are not ligands by default;
    on request each is one ligand (its branched instance whole), flagged covalent."""
    block = block_of(DATA / "mmcif" / "1igy.cif")
    branched = table(block, "_pdbx_branch_scheme.", ["pdb_asym_id", "pdb_seq_num", "pdb_mon_id"])
    instances: dict[str, list[str]] = {}
    first: dict[str, str] = {}
    for chain, number, mon in branched:
        instances.setdefault(chain, []).append(mon)
        first.setdefault(chain, f"{chain}:{number}")
    _, samples, _ = default_run("1igy.cif")
    skipped = next(s for s in samples if s.task == "protein").metadata["ligands_skipped"]["glycan"]
    assert skipped == dict(Counter("-".join(mons) for mons in instances.values()))
    _, with_glycans, _ = run(PdbSource(PdbConfig(include_glycans=True)), DATA / "mmcif" / "1igy.cif")
    pockets = [s for s in with_glycans if s.task == "pocket"]
    assert {s.metadata["ligand_instance"] for s in pockets} == set(first.values())
    linked = {row[0] for row in table(
        block, "_struct_conn.", ["ptnr2_auth_asym_id", "ptnr2_auth_seq_id", "ptnr1_auth_comp_id", "conn_type_id"]
    ) if row[2] == "ASN" and row[3] == "covale"}
    assert {s.metadata["ligand_instance"].split(":")[0] for s in pockets if s.metadata["covalent"]} == linked


# --- texts, ligands, metadata ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_every_text_parses_back_and_tokenizes_losslessly(path: Path) -> None:
    _, samples, _ = default_run(path.name)
    tokenizer = default_tokenizer()
    for sample in samples:
        form = FORMATS[sample.task]
        assert sample.domain == form.domain
        assert form.write(form.parse(sample.text)) == sample.text
        assert tokenizer.decode(tokenizer.encode(sample.text)) == sample.text


def smiles_formula(smiles: str) -> str:
    return re.sub(r"[+-]\d*$", "", rdMolDescriptors.CalcMolFormula(Chem.MolFromSmiles(smiles)))


@pytest.mark.parametrize("name", ["3o5r.cif", "4i39.cif", "5h73.cif", "7gsa.cif", "1k6p.cif"])
def test_ligand_smiles_have_the_entry_chem_comp_formula(name: str) -> None:
    block = block_of(DATA / "mmcif" / name)
    rows = table(block, "_chem_comp.", ["id", "formula"])
    formulas = {ccd_id: "".join(p for p in formula.split() if p[0].isalpha()) for ccd_id, formula in rows}
    _, samples, _ = run_keeping_biolip_listed_ligands(name)
    complexes = [s for s in samples if s.task == "complex_residue_smiles"]
    assert complexes
    for sample in complexes:
        ligand = FORMATS[sample.task].parse(sample.text).ligand
        assert smiles_formula(ligand.smiles) == formulas[sample.metadata["ligand_ccd_id"]]
        assert sample.metadata["smiles_source"] == CCD_BUNDLED


def test_user_components_file_is_used_and_recorded() -> None:
    source = PdbSource(PdbConfig(components_path=str(SUBSET), use_bundled_ccd=False))
    _, samples, _ = run(source, DATA / "mmcif" / "3o5r.cif")
    _, bundled, _ = default_run("3o5r.cif")
    user_complexes = [s for s in samples if s.task.startswith("complex")]
    assert {s.metadata["smiles_source"] for s in user_complexes} == {CCD_USER}
    assert [s.text for s in user_complexes] == [s.text for s in bundled if s.task.startswith("complex")]


def test_metadata_from_the_entry() -> None:
    block = block_of(DATA / "mmcif" / "3o5r.cif")
    _, samples, _ = default_run("3o5r.cif")
    sample = next(s for s in samples if s.task == "complex_residue_surface_expanded_smiles")
    meta = sample.metadata
    assert meta["entry_id"] == block.find_value("_entry.id")
    assert meta["method"] == gemmi.cif.as_string(block.find_value("_exptl.method"))
    assert meta["resolution"] == pytest.approx(float(block.find_value("_refine.ls_d_res_high")))
    assert str(meta["deposition_year"]) == block.find_value("_pdbx_database_status.recvd_initial_deposition_date")[:4]
    assert meta["model"] == 1 and meta["pocket_cutoff"] == 6.0 and meta["ligand_ccd_id"] == "FK5"
    assert sample.source_id == f"3O5R:{meta['ligand_instance']}:FK5"
    assert meta["ligand_heavy_atoms"] == meta["ccd_heavy_atoms"] == heavy_atoms_in_formula(block, "FK5")


def test_entry_ids_come_from_the_entry_or_else_the_file_name(tmp_path: Path) -> None:
    """``_entry.id`` or HEADER's idCode when the file has one; a block name (``data_s``) is never taken as an id."""
    text = (DATA / "mmcif" / "1l2y.cif").read_text()
    assert block_of(DATA / "mmcif" / "1l2y.cif").find_value("_entry.id") == "1L2Y"
    anonymous = tmp_path / "trp-cage.cif"
    anonymous.write_text(re.sub(r"^_entry\.id.*$", "", text.replace("data_1L2Y", "data_s", 1), flags=re.MULTILINE))
    assert gemmi.cif.read(str(anonymous)).sole_block().name == "s"
    pdb = PdbSource(PdbConfig(use_bundled_ccd=True))
    _, samples, _ = run(pdb, anonymous)
    assert samples and {s.metadata["entry_id"] for s in samples} == {"TRP-CAGE"}

    legacy = (DATA / "legacy_pdb" / "1orc.pdb").read_text()
    assert legacy[62:66] == "1ORC"
    for name, body, expected in (("pdb1orc.ent", legacy.split("\n", 1)[1], "1ORC"),   # archive name, no HEADER
                                 ("cro.pdb", legacy, "1ORC")):                       # HEADER wins over the name
        (tmp_path / name).write_text(body)
        _, samples, _ = run(pdb, tmp_path / name)
        assert samples and {s.metadata["entry_id"] for s in samples} == {expected}, name


def test_covalent_ligand_is_flagged() -> None:
    """4I39's p-coumaric acid (HC4) is a thioester on a cysteine: a covalent ligand, kept and flagged."""
    block = block_of(DATA / "mmcif" / "4i39.cif")
    bonds = table(block, "_struct_conn.", ["conn_type_id", "ptnr1_label_comp_id", "ptnr2_label_comp_id"])
    assert any(kind == "covale" and "HC4" in (a, b) for kind, a, b in bonds)
    _, samples, _ = run_keeping_biolip_listed_ligands("4i39.cif")
    assert {s.metadata["covalent"] for s in samples if s.task != "protein"} == {True}


def test_dedup_keys_follow_what_each_text_carries() -> None:
    _, samples, _ = run_keeping_biolip_listed_ligands("5h73.cif")
    keys = Counter((s.task, s.dedup_key) for s in samples)
    assert max(keys.values()) == 1
    by_ligand = {}
    for s in samples:
        by_ligand.setdefault(s.task, set()).add(s.dedup_key)
    assert all(len(by_ligand[task]) == 3 for task in LIGAND_TASKS)  # three ligands, three pockets
    protein_keys = {s.dedup_key for s in samples if s.task == "protein"}
    _, legacy, _ = default_run("3o5r.pdb")
    _, cif, _ = default_run("3o5r.cif")
    assert [s.dedup_key for s in legacy] == [s.dedup_key for s in cif]
    assert protein_keys.isdisjoint({s.dedup_key for s in cif})


def test_symmetric_copies_are_written_once() -> None:
    """4OZ7's two Cu(I) ions sit at the same position of two identical chains: one sample, two copies."""
    config = PdbConfig(min_ligand_heavy_atoms=1, excluded_components=DEFAULT_EXCLUDED - {"CU1"})
    _, samples, _ = run(PdbSource(config), DATA / "legacy_pdb" / "4oz7.pdb")
    ligand_samples = [s for s in samples if s.task != "protein"]
    assert len(ligand_samples) == len(LIGAND_TASKS)
    assert all(s.metadata["copies"] == ["A:101", "B:101"] for s in ligand_samples)
    assert len(set(seqres(DATA / "legacy_pdb" / "4oz7.pdb").values())) == 1  # chains A and B are identical


# --- structure handling -------------------------------------------------------------------------------


def test_nmr_entry_uses_the_first_model() -> None:
    structure = gemmi.read_structure(str(DATA / "mmcif" / "1l2y.cif"))
    first = [a.pos.tolist() for r in structure[0][0] for a in r if not a.is_hydrogen()]
    second = [a.pos.tolist() for r in structure[1][0] for a in r if not a.is_hydrogen()]
    entry = load_entry((DATA / "mmcif" / "1l2y.cif").read_text(), "1l2y")
    assert entry.model_number == 1 and len(structure) == 38
    assert np.allclose(entry.atom_positions, first)
    assert not np.allclose(entry.atom_positions, second)


def test_microheterogeneity_keeps_the_occupied_residue() -> None:
    """The edge case models position 22 as SER (altlocs A, B at 0.2) or PRO (altloc C at 0.6): PRO wins.
    (gemmi's ``remove_alternative_conformations`` would keep the first, SER.)"""
    entry = load_entry((DATA / "mmcif" / "altloc_edgecase_from_biotite.cif").read_text(), "edge")
    assert [c.sequence for c in entry.chains] == ["P"]
    assert len(entry.atom_positions) == 7  # PRO's heavy atoms: N CA C O CB CG CD
    _, samples, rejects = default_run("altloc_edgecase_from_biotite.cif")
    assert not samples and {r.reason_code for r in rejects} == {"chain_too_short", "no_protein_chain"}


def test_insertion_codes_and_positions_follow_the_sequence_scheme() -> None:
    path = DATA / "mmcif" / "1igy.cif"
    scheme = {f"{c}:{n}{'' if i in ('.', '?') else i}": int(s) for c, n, i, s in table(
        block_of(path), "_pdbx_poly_seq_scheme.", ["pdb_strand_id", "pdb_seq_num", "pdb_ins_code", "seq_id"]
    )}
    entry = load_entry(path.read_text(), "1igy")
    assert {"B:52A", "B:82A", "B:82B", "B:82C", "D:82C"} <= set(entry.residue_ids)
    for row, residue_id in enumerate(entry.residue_ids):
        if entry.residue_chain[row] >= 0:
            assert entry.residue_position[row] == scheme[residue_id] - 1, residue_id


def test_negative_residue_numbers_are_kept(tmp_path: Path) -> None:
    """No fixture numbers residues below zero, so 3O5R is renumbered by -1100 with gemmi: the same
    samples come out, with residue ids shifted (FK506 at A:-99)."""
    structure = gemmi.read_structure(str(DATA / "mmcif" / "3o5r.cif"))
    for chain in structure[0]:
        for residue in chain:
            residue.seqid.num -= 1100
    shifted = tmp_path / "3o5r_shifted.cif"
    structure.make_mmcif_document().write_file(str(shifted))
    _, samples, _ = run(PdbSource(), shifted)
    _, original, _ = default_run("3o5r.cif")
    assert [s.text for s in samples] == [s.text for s in original]
    pocket, reference = (next(s for s in run_ if s.task == "pocket") for run_ in (samples, original))
    assert pocket.metadata["ligand_instance"] == "A:-99"
    assert pocket.metadata["pocket_residue_ids"] == [
        f"A:{int(r.split(':')[1]) - 1100}" for r in reference.metadata["pocket_residue_ids"]
    ]


def seqres(path: Path) -> dict[str, str]:
    """Chain -> SEQRES sequence, modified residues read as the parent their MODRES record names."""
    chains: dict[str, list[str]] = {}
    parents: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("SEQRES"):
            chains.setdefault(line[11].strip() or "_", []).extend(line[19:70].split())
        elif line.startswith("MODRES"):
            parents[line[12:15].strip()] = line[24:27].strip()
    return {chain: "".join(STANDARD.get(parents.get(n, n), "X") for n in names) for chain, names in chains.items()}


def test_old_ca_only_pdb_is_read_and_its_trace_rejected() -> None:
    """pdb1gdr.ent keeps '1GDR nnn' in columns 73-80; it reads with 72 columns. The sequence is the SEQRES,
    and the CA trace is a reject for pockets (the entry has no ligands anyway)."""
    path = DATA / "legacy_pdb" / "pdb1gdr.ent"
    items, samples, rejects = run(PdbSource(), path)
    assert [i.locator for i in items] == ["entry 1GDR"]
    assert [FORMATS["protein"].parse(s.text).chains[0].sequence for s in samples] == list(seqres(path).values())
    assert [(r.locator, r.reason_code) for r in rejects] == [("entry 1GDR structure", "ca_only_model")]


@pytest.mark.parametrize("name", ["1hvr.pdb", "1l2y.pdb", "1orc.pdb", "3o5r.pdb", "5e5z.pdb"])
def test_legacy_pdb_sequences_are_the_seqres(name: str) -> None:
    path = DATA / "legacy_pdb" / name
    _, samples, _ = default_run(name)
    assert {FORMATS["protein"].parse(s.text).chains[0].sequence for s in samples if s.task == "protein"} == set(
        seqres(path).values()
    )


def test_dna_only_entry_is_one_clear_reject() -> None:
    block = block_of(DATA / "mmcif" / "1bna.cif")
    assert {kind for _, kind in table(block, "_entity_poly.", ["entity_id", "type"])} == {"polydeoxyribonucleotide"}
    _, samples, rejects = default_run("1bna.cif")
    assert samples == []
    assert [(r.locator, r.reason_code) for r in rejects] == [("entry 1BNA", "no_protein_chain")]
    assert "DNA" in rejects[0].reason


def test_dna_and_depsipeptide_entry() -> None:
    """1PFE: a DNA octamer with echinomycin, an 8-residue cyclic depsipeptide of mostly modified residues
    (its quinoxaline chromophores, QUI, are non-polymer). It is not a protein: no samples, two rejects."""
    block = block_of(DATA / "mmcif" / "1pfe.cif.gz")
    kinds = dict(table(block, "_entity_poly.", ["entity_id", "type"]))
    assert sorted(kinds.values()) == ["polydeoxyribonucleotide", "polypeptide(L)"]
    _, samples, rejects = default_run("1pfe.cif.gz")
    assert samples == []
    assert [(r.locator, r.reason_code) for r in rejects] == [
        ("entry 1PFE chain B", "mostly_nonstandard"), ("entry 1PFE", "no_protein_chain"),
    ]


def test_five_character_ccd_id() -> None:
    """7GSA's PanDDA ligand A1AA6: found in the CCD; without one, a reject for that ligand only; with
    coordinate perception (the ligand has modelled hydrogens), the same molecule."""
    path = DATA / "mmcif" / "7gsa.cif"
    _, samples, _ = default_run("7gsa.cif")
    bundled = next(s for s in samples if s.task == "complex_residue_smiles")
    assert bundled.source_id == "7GSA:A:402:A1AA6" and bundled.metadata["smiles_source"] == CCD_BUNDLED
    no_ccd = PdbConfig(use_bundled_ccd=False, perceive_unknown_components=False)
    _, samples, rejects = run(PdbSource(no_ccd), path)
    assert [s.task for s in samples] == ["protein"]
    assert [(r.locator, r.reason_code) for r in rejects] == [("entry 7GSA ligand A:402 A1AA6", "unknown_component")]
    _, samples, _ = run(PdbSource(PdbConfig(use_bundled_ccd=False)), path)
    perceived = next(s for s in samples if s.task == "complex_residue_smiles")
    assert perceived.metadata["smiles_source"] == PERCEIVED
    molecules = [FORMATS[s.task].parse(s.text).ligand.smiles for s in (bundled, perceived)]
    assert len({Chem.MolToInchiKey(Chem.MolFromSmiles(m)) for m in molecules}) == 1


# --- bad input, in one job ----------------------------------------------------------------------------


def test_bad_files_are_rejects_and_the_job_goes_on(tmp_path: Path) -> None:
    good = (DATA / "mmcif" / "3o5r.cif").read_bytes()
    bad = {
        "corrupt.cif.gz": gzip.compress(good)[:5000],
        "truncated.cif": good[: len(good) // 2],
        "empty.cif": b"",
        "blank.pdb": b"\n  \n",
        "latin1.cif": good.replace(b"Fk-506 binding", "Fk-506 bindíng".encode("latin-1"), 1),
        "notes.pdb": b"REMARK nothing to see here\nEND\n",
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    files = [tmp_path / name for name in bad] + [
        tmp_path / "missing.cif", DATA / "mmcif" / "1YJP_invalid.cif.gz", DATA / "mmcif" / "1bna.cif",
        DATA / "legacy_pdb" / "pdb1gdr.ent", DATA / "mmcif" / "3o5r.cif", DATA / "mmcif" / "1YJP.cif",
    ]
    source = PdbSource()
    outcome = {}
    for path in files:
        _, samples, rejects = run(source, path)
        outcome[path.name] = ({s.task for s in samples}, [r.reason_code for r in rejects])
    assert outcome == {
        "corrupt.cif.gz": (set(), ["corrupt_gzip"]),
        "truncated.cif": (set(), ["mmcif_syntax"]),
        "empty.cif": (set(), ["empty_file"]),
        "blank.pdb": (set(), ["empty_file"]),
        "latin1.cif": (set(), ["not_utf8"]),
        "notes.pdb": (set(), ["not_a_structure"]),
        "missing.cif": (set(), ["unreadable"]),
        "1YJP_invalid.cif.gz": (set(), ["invalid_atom_site"]),
        "1bna.cif": (set(), ["no_protein_chain"]),
        "pdb1gdr.ent": ({"protein"}, ["ca_only_model"]),
        "3o5r.cif": (set(ALL_TASKS), []),
        "1YJP.cif": ({"protein"}, []),
    }


def test_rejects_name_the_file_and_the_reason() -> None:
    [reject] = run(PdbSource(), DATA / "mmcif" / "1YJP_invalid.cif.gz")[2]
    assert reject.source == "pdb" and reject.source_uri.endswith("1YJP_invalid.cif.gz")
    assert reject.locator == "entry 1YJP" and reject.stage == "parse" and "WRONG" in reject.reason


# --- configuration ------------------------------------------------------------------------------------


def test_config_from_plain_options() -> None:
    source = make_source("pdb", {"pocket_cutoff": "4.5", "tasks": "protein,pocket", "min_chain_length": "3"})
    assert source.config.pocket_cutoff == 4.5 and source.config.tasks == ("protein", "pocket")
    _, samples, _ = run(source, DATA / "mmcif" / "3o5r.cif")
    assert [s.task for s in samples] == ["protein", "pocket"]
    assert samples[1].metadata["pocket_cutoff"] == 4.5
    with pytest.raises(ConfigError, match="molecule"):
        make_source("pdb", {"tasks": "protein,molecule"})
