"""Split groups computed at ingest (the ``split_group`` and ``chain_sequences`` columns) give the same split as
deriving them from the text (shards written before the columns existed), on the output of the real sources
run over tests/data files; and a molecule's group is its Bemis–Murcko scaffold as bare RDKit computes it."""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from Bio import SeqIO
from rdkit import Chem
from rdkit.Chem.Scaffolds import MurckoScaffold

import pipeline.split as split_module
from grammar.tokenizer import default_tokenizer
from pipeline.convert import convert_items
from pipeline.datasets import dedup_dataset, export_megatron_dataset, split_dataset
from pipeline.records import SHARD_COLUMN_DEFAULTS, SHARD_SCHEMA
from pipeline.sources import make_source
from pipeline.split import ProteinClusterConfig, SplitConfig, SplitError, assign_splits, group_sources
from pipeline.versions import DatasetStore

DATA = Path(__file__).resolve().parents[1] / "data"
EGFR = DATA / "chembl" / "EGFR_compounds_teachopencadd.csv"
N_EGFR = 600  # of 5,568 molecules: hundreds of scaffolds, about a second to ingest
INPUTS = [  # (source, options, files): every source that sets a group or carries chains, on real files
    ("smiles", {"column": "smiles", "id_column": "molecule_chembl_id"}, [EGFR]),
    ("chembl", {}, [DATA / "chembl" / "chembl_30_chemreps_100.txt"]),
    ("uspto", {}, [DATA / "uspto" / "USPTO_MIT_test_human.txt", DATA / "uspto" / "lowe_grants_sample_small.rsmi"]),
    ("mp", {}, [DATA / "mp" / "mp_20_sample.csv"]),
    ("pdb", {}, [DATA / "pdb" / "mmcif" / name for name in ("1aki.cif", "4i39.cif", "7gsa.cif")]),
    ("uniprot", {}, [DATA / "uniprot" / "pdb_seqres_excerpt_first28records.txt",
                     DATA / "uniprot" / "swissprot_8entries_oldstyle_header_biopython_multi_ex.fasta"]),
    ("antibody", {}, [DATA / "antibody" / "oas_paired_layout_from_sabdab_structures.csv.gz",
                      DATA / "antibody" / "oas_unpaired_layout_from_sabdab_structures.csv"]),
]
# MinHash clustering: both paths hand the same chains to the same clustering, whichever it is (the MMseqs2
# path has its own tests), and it keeps this module quick.
CONFIG = SplitConfig(fractions=(0.6, 0.2, 0.2), proteins=ProteinClusterConfig(method="minhash"))


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> pl.DataFrame:
    """Shard rows of the real sources (the engine's own convert -> tokenize -> row path, in this process)."""
    tokenizer = default_tokenizer()
    egfr = tmp_path_factory.mktemp("egfr") / "egfr.csv"
    with EGFR.open() as handle:
        egfr.write_text("".join(line for _, line in zip(range(N_EGFR + 1), handle, strict=False)))
    rows = []
    for name, options, files in INPUTS:
        source = make_source(name, options)
        for path in files:
            path = egfr if path == EGFR else path
            rows += convert_items(source, tokenizer, list(source.read(str(path)))).records
    return pl.from_arrow(pa.Table.from_pylist(rows, schema=SHARD_SCHEMA))


def without_group_columns(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.drop(list(SHARD_COLUMN_DEFAULTS))


def test_every_source_sets_the_group_it_knows(ingested):
    fixed = ingested.filter(pl.col("split_group") != "")
    by_source = dict(fixed.group_by("source").agg(pl.col("split_group").str.extract(r"^(\w+):").unique())
                     .iter_rows())
    assert set(by_source["smiles"]) == {"scaffold"} and set(by_source["chembl"]) == {"scaffold", "acyclic"}
    assert by_source["uspto"] == ["product"] and by_source["mp"] == ["key"]
    unset = ingested.filter(pl.col("split_group") == "")
    assert set(unset["domain"].unique()) == {"protein", "pocket", "complex", "antibody"}
    # Pockets, complexes and antibodies carry their chains; a plain protein's text is its chains, read from it in split.
    carried = unset.filter(pl.col("task") != "protein")
    assert carried.height > 0 and carried["chain_sequences"].null_count() == 0
    assert unset.filter(pl.col("task") == "protein")["chain_sequences"].null_count() == \
        unset.filter(pl.col("task") == "protein").height
    assert ingested.filter(pl.col("split_group") != "")["chain_sequences"].null_count() == fixed.height


def test_molecule_group_is_the_scaffold_bare_rdkit_gives(ingested):
    with EGFR.open() as handle:
        raw = {row["molecule_chembl_id"]: row["smiles"] for _, row in zip(range(N_EGFR), csv.DictReader(handle),
                                                                          strict=False)}
    molecules = ingested.filter(pl.col("source") == "smiles")
    assert molecules.height == N_EGFR
    for source_id, group in molecules.select("source_id", "split_group").iter_rows():
        scaffold = MurckoScaffold.MurckoScaffoldSmiles(mol=Chem.MolFromSmiles(raw[source_id]))
        assert group == f"scaffold:{scaffold}", source_id


def test_split_is_identical_with_and_without_the_group_columns(ingested, monkeypatch):
    exclude = [
        ingested.filter(pl.col("source") == "smiles")["text"][7],  # a molecule's grammar text
        Chem.MolToSmiles(Chem.MolFromSmiles("Brc1cccc(Nc2ncnc3cc4ccccc4cc23)c1")),  # EGFR's first, as SMILES
        ingested.filter(pl.col("source") == "mp")["dedup_key"][3],  # a material's key
        ingested.filter(pl.col("task") == "protein")["text"][0],  # a protein, clustered with its homologs
    ]
    parsed: list[str] = []
    record_group = split_module.record_group

    def counted(task: str, text: str, fallback: str):
        parsed.append(task)
        return record_group(task, text, fallback)

    monkeypatch.setattr(split_module, "record_group", counted)
    with_columns = assign_splits(CONFIG, ingested, exclude)
    parsed_with_columns, parsed[:] = list(parsed), []
    older_shard = assign_splits(CONFIG, without_group_columns(ingested), exclude)
    # With the columns only the two grammar-text exclusion entries are parsed; without, every record too but
    # plain proteins (their chains are split off their text on both paths: next test).
    assert parsed_with_columns == ["molecule", "protein"]
    assert len(parsed) == ingested.filter(pl.col("task") != "protein").height + 2
    assert with_columns.protein_method == older_shard.protein_method == "minhash"
    columns = ["content_id", "source_id", "group", "split"]
    for kept in ("records", "excluded"):
        new, old = (getattr(r, kept).select(columns).sort(columns) for r in (with_columns, older_shard))
        assert new.equals(old), kept
    assert with_columns.excluded.height > 0
    assert set(with_columns.records["split"].unique()) == {"train", "valid", "test"}


def test_plain_protein_chains_are_the_sequences_biopython_reads(ingested):
    """The tag split of a protein record's text gives the source's own sequences (Biopython's reading of the
    FASTA), record by record; a text the grammar would refuse goes to the grammar, which names it."""
    fasta = DATA / "uniprot" / "swissprot_8entries_oldstyle_header_biopython_multi_ex.fasta"
    expected = [str(record.seq) for record in SeqIO.parse(fasta, "fasta")]
    rows = ingested.filter(pl.col("source_uri") == str(fasta))
    _, chain_rows, chain_lists, text_rows = group_sources(rows)
    assert len(text_rows) == 0 and sorted(chain_rows) == list(range(rows.height))
    by_row = dict(zip(chain_rows.tolist(), chain_lists, strict=True))
    assert [by_row[i] for i in range(rows.height)] == [[s] for s in expected]
    bad = rows.head(1).with_columns(text=pl.lit("<ProteinS>MKV<PocketS>L<PocketE>x<ProteinE>"))
    assert len(group_sources(bad)[3]) == 1
    with pytest.raises(SplitError, match="record"):
        assign_splits(CONFIG, bad)


def test_older_shards_and_new_shards_give_byte_identical_megatron_files(ingested, tmp_path):
    """The store path (dedup -> split -> export) over an ingest folder written before the columns existed
    and one written with them: same split tables, byte-identical .bin/.idx."""
    bins = {}
    for label, frame in (("new", ingested), ("old", without_group_columns(ingested))):
        records = tmp_path / label / "records"
        records.mkdir(parents=True)
        pq.write_table(frame.to_arrow(), records / "part-00000.parquet")
        store = DatasetStore(tmp_path / f"store-{label}")
        dedup_dataset(store, [str(tmp_path / label)], "d")
        split_dataset(store, "d", "s", CONFIG)
        exported = export_megatron_dataset(store, "s", "e").manifest
        files = store.dataset_dir("e") / "files" / exported.version
        bins[label] = {p.relative_to(files): p.read_bytes() for p in sorted(files.rglob("*")) if p.suffix in
                       (".bin", ".idx")}
        split_table = store.read(store.manifest("s")).select("content_id", "group", "split").sort("content_id")
        bins[label]["split"] = split_table.write_csv().encode()
    assert len(bins["new"]) > 2 and bins["new"] == bins["old"]
