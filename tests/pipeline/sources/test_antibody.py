"""The antibody source on real structures and SAbDab rows (tests/data/antibody, see tests/data/PROVENANCE.md).

References are independent of the source: chain ids from the SAbDab TSV read with ``csv``; chain sequences
from Biopython's own SEQRES/ATOM readers; CDRs from the IMGT numbers SAbDab wrote into 1KB5 (IMGT CDR1
27-38, CDR2 56-65, CDR3 105-117) and from ``anarci`` called directly; paratope and epitope from Biopython's
``NeighborSearch`` over Biopython-parsed atoms; the 8KDM heavy/light pairs of SAbDab's rows for the pairing
found by contacts in a bare PDB entry.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from functools import lru_cache
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from anarci import anarci
from Bio import SeqIO
from Bio.PDB import MMCIFParser, NeighborSearch, PDBParser
from Bio.PDB.Polypeptide import index_to_one, three_to_index

from grammar.antibody import Antibody, AntibodyAntigen
from grammar.formats import FORMATS
from grammar.tokenizer import default_tokenizer
from pipeline.check import check_roundtrip
from pipeline.convert import convert_items
from pipeline.records import SHARD_SCHEMA
from pipeline.sources import make_source
from pipeline.sources.base import convert_file
from pipeline.split import ProteinClusterConfig, SplitConfig, assign_splits

DATA = Path(__file__).resolve().parents[2] / "data"
AB = DATA / "antibody"
STRUCTURES = AB / "structures"
SUBSET = AB / "sabdab_summary_subset.tsv"  # verbatim SAbDab rows: 8kdm (bundled) and two whose structure is not
HANDMADE = AB / "sabdab_handmade_rows.tsv"  # rows for 1kb5/4zxb and bad rows, written for these tests
PAIRED = AB / "oas_paired_layout_from_sabdab_structures.csv.gz"
UNPAIRED = AB / "oas_unpaired_layout_from_sabdab_structures.csv"
IMGT_CDRS = ((27, 38), (56, 65), (105, 117))
CUTOFF = 6.0


def source():
    return make_source("antibody", {"structures_path": str(STRUCTURES)})


@lru_cache(maxsize=4)
def converted(path: Path):
    return convert_file(source(), str(path))


def tsv_rows(path: Path) -> dict[str, dict[str, str]]:
    """Rows by locator ("line N pdb"), read with csv (blank lines skipped as SAbDab's quirks need)."""
    with open(path, newline="") as handle:
        lines = [(n, line) for n, line in enumerate(handle, 1) if line.strip()]
    header = lines[0][1].rstrip("\n").split("\t")
    rows = {}
    for number, row in zip([n for n, _ in lines[1:]], csv.DictReader([line for _, line in lines], delimiter="\t"),
                           strict=True):
        rows[f"line {number} {row['pdb']}"] = row
    assert list(next(iter(rows.values())).keys()) == header
    return rows


@lru_cache(maxsize=4)
def bio_structure(pdb_id: str):
    path = next(STRUCTURES.glob(f"{pdb_id}.*"))
    with gzip.open(path, "rt") as handle:
        text = handle.read()
    parser = MMCIFParser(QUIET=True) if ".cif" in path.name else PDBParser(QUIET=True)
    return parser.get_structure(pdb_id, io.StringIO(text))[0], text, ".cif" in path.name


def bio_sequences(pdb_id: str) -> dict[str, str]:
    """Chain id -> deposited sequence (SEQRES / _entity_poly_seq) by Biopython; the modelled residues where
    there is none (``pdb-atom`` would fill the gaps of IMGT numbering with X)."""
    model, text, is_cif = bio_structure(pdb_id)
    records = list(SeqIO.parse(io.StringIO(text), "cif-seqres" if is_cif else "pdb-seqres"))
    if records:
        return {record.annotations["chain"]: str(record.seq) for record in records}
    return {chain.id: "".join(one_letter(r.get_resname()) for r in chain if r.id[0] == " ") for chain in model}


def one_letter(name: str) -> str:
    try:
        return index_to_one(three_to_index(name))
    except (KeyError, ValueError):
        return "X"


def residue_id(residue) -> str:
    _, number, icode = residue.id
    return f"{residue.get_parent().id}:{number}{icode.strip()}"


def contacts(pdb_id: str, antibody_chains: list[str], antigen_chains: list[str]) -> tuple[set[str], set[str]]:
    """(paratope, epitope) residue ids: polymer heavy atoms within 6 Å, Biopython NeighborSearch."""
    model, _, _ = bio_structure(pdb_id)

    def atoms(chain_ids):
        return [atom for chain_id in chain_ids for residue in model[chain_id] if residue.id[0] == " "
                for atom in residue if atom.element not in ("H", "D")]

    antigen_atoms = atoms(antigen_chains)
    search = NeighborSearch(antigen_atoms)
    paratope, epitope = set(), set()
    for atom in atoms(antibody_chains):
        near = search.search(atom.coord, CUTOFF)
        if near:
            paratope.add(residue_id(atom.get_parent()))
            epitope.update(residue_id(a.get_parent()) for a in near)
    return paratope, epitope


def anarci_cdrs(sequence: str, chain_types: str) -> tuple[str, ...]:
    """The IMGT CDRs of the first domain of one of ``chain_types``, by anarci itself."""
    numbered, details, _ = anarci([("q", sequence)], scheme="imgt", allowed_species=None)
    for domain, detail in zip(numbered[0], details[0], strict=True):
        if detail["chain_type"] in chain_types:
            return tuple("".join(aa for (number, _), aa in domain[0] if low <= number <= high and aa != "-")
                         for low, high in IMGT_CDRS)
    raise AssertionError(f"anarci finds no {chain_types} domain")


@pytest.mark.parametrize("path", [SUBSET, HANDMADE], ids=["sabdab_rows", "handmade_rows"])
def test_sabdab_rows_pair_the_chains_the_tsv_names(path):
    done = converted(path)
    rows = tsv_rows(path)
    written = [s for s in done.samples if s.task == "antibody"]
    assert written
    for sample in written:
        antibody: Antibody = FORMATS["antibody"].parse(sample.text)
        pdb_id = sample.source_id.split(":")[0].lower()
        row = next(r for r in rows.values() if r["pdb"] == pdb_id and sample.metadata.get("heavy_chain") ==
                   (None if r["Hchain"] == "NA" else r["Hchain"]) and sample.metadata.get("light_chain") ==
                   (None if r["Lchain"] == "NA" else r["Lchain"]))
        sequences = bio_sequences(pdb_id)
        for chain, chain_id in ((antibody.heavy, row["Hchain"]), (antibody.light, row["Lchain"])):
            if chain_id == "NA":
                assert chain is None
                continue
            assert chain.sequence in sequences[chain_id]  # the V domain of the chain the row names
            others = [s for c, s in sequences.items() if s != sequences[chain_id]]
            assert not any(chain.sequence in s for s in others)


def test_sabdab_cdrs_are_imgt_27_38_56_65_105_117():
    done = converted(HANDMADE)
    antibody = next(s for s in done.samples if s.task == "antibody" and s.source_id == "1KB5:H+L")
    parsed: Antibody = FORMATS["antibody"].parse(antibody.text)
    model, _, _ = bio_structure("1kb5")  # SAbDab renumbered 1KB5's antibody chains with IMGT numbers
    for chain, chain_id in ((parsed.heavy, "H"), (parsed.light, "L")):
        by_number = [(r.id[1], r.get_resname()) for r in model[chain_id] if r.id[0] == " "]
        expected = tuple("".join(one_letter(name) for number, name in by_number if low <= number <= high)
                         for low, high in IMGT_CDRS)
        assert chain.cdr_sequences() == expected
    for sample in done.samples + converted(SUBSET).samples:
        if sample.task != "antibody":
            continue
        parsed = FORMATS["antibody"].parse(sample.text)
        if parsed.heavy:
            assert parsed.heavy.cdr_sequences() == anarci_cdrs(parsed.heavy.sequence, "H")
        if parsed.light:
            assert parsed.light.cdr_sequences() == anarci_cdrs(parsed.light.sequence, "KL")


@pytest.mark.parametrize("path", [SUBSET, HANDMADE], ids=["sabdab_rows", "handmade_rows"])
def test_epitope_and_paratope_equal_a_biopython_neighbour_search(path):
    pairs = [s for s in converted(path).samples if s.task == "antibody_antigen"]
    assert pairs
    for sample in pairs:
        meta = sample.metadata
        pdb_id = sample.source_id.split(":")[0].lower()
        antibody_chains = [c for c in (meta.get("heavy_chain"), meta.get("light_chain")) if c]
        paratope, epitope = contacts(pdb_id, antibody_chains, meta["antigen_chains"])
        assert set(meta["epitope_residue_ids"]) == epitope and epitope
        assert set(meta["paratope_residue_ids"]) == paratope
        pair: AntibodyAntigen = FORMATS["antibody_antigen"].parse(sample.text)
        assert len(pair.antigen.pocket.residues) == len(epitope)
        marked = sum(len(c.paratope) for c in pair.antibody.chains)
        assert marked == len(paratope) - meta["paratope_outside_v_domain"]


def test_rejects_carry_specific_reason_codes_and_every_row_is_accounted_for():
    subset, handmade = converted(SUBSET), converted(HANDMADE)
    codes = sorted((r.locator, r.reason_code) for r in subset.rejects + handmade.rejects)
    assert codes == [
        ("line 4 9jhj", "structure_missing"), ("line 5 8zer", "structure_missing"),
        ("line 6 8kdm", "chain_not_in_structure"),  # heavy chain Z
        ("line 7 8kdm antibody_antigen", "chain_not_in_structure"),  # antigen chain Q: the pair only
        ("line 8 8kdm", "not_heavy_chain"),  # Hchain D is a kappa chain
        ("line 9 4zxb", "no_antibody_chain"),  # Hchain and Lchain NA
    ]
    tokenizer = default_tokenizer()
    for path in (SUBSET, HANDMADE):
        rows = tsv_rows(path)
        items = list(source().read(str(path)))
        assert len(items) == len(rows)  # one item (or read reject) per row
        result = convert_items(source(), tokenizer, items)
        stats = result.stats
        assert stats.items_read == len(rows) == stats.items_written + stats.items_rejected


def test_oas_units_paired_and_unpaired():
    paired = converted(PAIRED)
    with gzip.open(PAIRED, "rt") as handle:
        unit = json.loads(handle.readline())
        rows = list(csv.DictReader(handle))
    assert len(paired.items) == len(rows) == len(paired.samples) + len(paired.rejects)
    assert sorted(r.reason_code for r in paired.rejects) == ["chain_type_mismatch", "empty_sequence", "non_amino_acid"]
    for sample in paired.samples:
        row = rows[int(sample.source_id.rsplit("row ", 1)[1]) - 1]
        antibody = FORMATS["antibody"].parse(sample.text)
        # OAS holds V domains; ANARCI may leave an edge residue out of the domain it numbers (1IGY's light S1)
        assert antibody.heavy.sequence in row["sequence_alignment_aa_heavy"]
        assert antibody.light.sequence in row["sequence_alignment_aa_light"]
        assert antibody.heavy.cdr_sequences() == anarci_cdrs(row["sequence_alignment_aa_heavy"], "H")
        assert antibody.light.cdr_sequences() == anarci_cdrs(row["sequence_alignment_aa_light"], "KL")
        assert sample.metadata["oas_unit"] == unit
    unpaired = converted(UNPAIRED)
    kinds = {s.source_id.rsplit(" ", 1)[1]: FORMATS["antibody"].parse(s.text) for s in unpaired.samples}
    assert kinds["1"].heavy and not kinds["1"].light  # heavy chain alone
    assert kinds["2"].light and kinds["2"].heavy is None  # light chain alone: the empty heavy slot
    assert sorted(r.reason_code for r in unpaired.rejects) == ["not_an_antibody", "not_an_antibody"]  # TCR, spike


def test_antibodies_in_a_bare_pdb_entry_pair_and_find_antigens_as_sabdab_does():
    done = converted(STRUCTURES / "8kdm.pdb.gz")
    rows = [r for r in tsv_rows(SUBSET).values() if r["pdb"] == "8kdm"]
    sabdab = {(r["Hchain"], r["Lchain"]): [c.strip() for c in r["antigen_chain"].split("|")] for r in rows}
    (antibody,) = [s for s in done.samples if s.task == "antibody"]  # both Fabs of 8KDM: one sequence, two copies
    assert {tuple(c.split("+")) for c in antibody.metadata["copies"]} == set(sabdab) == {("E", "D"), ("G", "F")}
    pairs = [s for s in done.samples if s.task == "antibody_antigen"]
    assert len(pairs) == 2  # each Fab touches its own spike chains
    for sample in pairs:
        heavy, light = sample.metadata["chain_ids"]
        assert sample.metadata["epitope_chain_ids"] == sabdab[(heavy, light)]
        paratope, epitope = contacts("8kdm", [heavy, light], sabdab[(heavy, light)])
        assert set(sample.metadata["epitope_residue_ids"]) == epitope
        assert set(sample.metadata["paratope_residue_ids"]) == paratope
    tcr = converted(STRUCTURES / "1kb5.pdb.gz")  # the Fab's antigen is a T-cell receptor (SAbDab: AGCHAIN=A;B)
    assert [s.metadata.get("epitope_chain_ids") for s in tcr.samples] == [None, ["A", "B"]]
    igg = converted(DATA / "pdb/mmcif/1igy.cif")
    (sample,) = igg.samples  # no antigen in the entry: the antibody sample only
    assert sorted(sample.metadata["copies"]) == ["B+A", "D+C"]  # intact IgG1: two identical H/L pairs


def test_roundtrip_report_covers_every_antibody_record():
    inputs = [str(p) for p in (SUBSET, HANDMADE, PAIRED, UNPAIRED, STRUCTURES / "1kb5.pdb.gz")]
    report = check_roundtrip("antibody", inputs, {"structures_path": str(STRUCTURES)})
    counts = report["domains"]["antibody"]
    assert report["failures"] == 0
    assert counts["round_trip_ok"] == counts["valid"] > 0
    assert counts["read"] == counts["valid"] + sum(counts["rejected"].values())


def test_antibodies_are_clustered_by_sequence_in_the_split():
    """The real split stage, from the shard columns and from the text alike: the 8KDM antibody of the SAbDab rows,
    of the OAS unit and of the bare entry shares one sequence cluster, so one split; no antibody is keyed alone."""
    tokenizer = default_tokenizer()
    items = [entry for path in (SUBSET, PAIRED, STRUCTURES / "8kdm.pdb.gz") for entry in source().read(str(path))]
    rows = convert_items(source(), tokenizer, items).records
    assert all(row["split_group"] == "" and row["chain_sequences"] for row in rows)
    heavy_8kdm = FORMATS["antibody"].parse(converted(SUBSET).samples[0].text).heavy.sequence
    ids_8kdm = [row["content_id"] for row in rows if heavy_8kdm in row["chain_sequences"]]
    config = SplitConfig(fractions=(0.5, 0.25, 0.25), proteins=ProteinClusterConfig(method="minhash"))
    groups = []
    for table in (pa.Table.from_pylist(rows, schema=SHARD_SCHEMA),
                  pa.Table.from_pylist([{**r, "chain_sequences": None} for r in rows], schema=SHARD_SCHEMA)):
        split = assign_splits(config, table).records
        assert not any(g.startswith("key:") for g in split["group"])
        with_8kdm = split.filter(pl.col("content_id").is_in(ids_8kdm))
        assert with_8kdm.height >= 5 and with_8kdm["group"].n_unique() == with_8kdm["split"].n_unique() == 1
        groups.append(split.sort("content_id")["group"].to_list())
    assert groups[0] == groups[1]  # the chain_sequences column gives the groups parsing the text gives


def test_bad_files_are_one_reject_each(tmp_path):
    header = SUBSET.read_text().splitlines()[0]
    no_chains = tmp_path / "no_chain_columns.tsv"
    no_chains.write_text("pdb\tmodel\n8kdm\t0\n")
    not_json = tmp_path / "not_an_oas_unit.csv"
    not_json.write_text("sequence_alignment_aa\nQVQLVQSGAEVKKPG\n")
    no_sequences = tmp_path / "oas_without_sequences.csv"
    no_sequences.write_text('{"Run": 1}\nsequence_id,v_call\nx,IGHV1-2\n')
    broken = tmp_path / "structures"
    broken.mkdir()
    (broken / "8kdm.pdb.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    row = next(line for line in SUBSET.read_text().splitlines() if line.startswith("8kdm\t"))
    sabdab = tmp_path / "rows.tsv"
    sabdab.write_text(f"{header}\n{row}\n")
    for path, code in ((no_chains, "wrong_header"), (not_json, "wrong_header"), (no_sequences, "wrong_header")):
        done = converted(path)
        assert not done.items and [r.reason_code for r in done.rejects] == [code], path.name
    done = convert_file(make_source("antibody", {"structures_path": str(broken)}), str(sabdab))
    assert [(r.stage, r.reason_code) for r in done.rejects] == [("convert", "corrupt_gzip")]
    assert "8kdm.pdb.gz" in done.rejects[0].reason


def test_an_scfv_sequence_holds_both_domains():
    """The numbering an scFv row relies on: heavy and light variable domains of one chain, each on its own span."""
    from pipeline.sources.antibody_numbering import number_sequences

    sabdab = {s.source_id: FORMATS["antibody"].parse(s.text) for s in converted(SUBSET).samples if s.task == "antibody"}
    antibody = sabdab["8KDM:E+D"]
    linker = "GGGGS" * 3
    scfv = antibody.heavy.sequence + linker + antibody.light.sequence
    heavy, light = number_sequences([scfv])[0]
    assert (heavy.chain_type, light.chain_type) == ("H", "K")
    assert scfv[heavy.start:heavy.end] == antibody.heavy.sequence
    assert light.start >= heavy.end + len(linker) - 1 and scfv[light.start:light.end] in antibody.light.sequence
