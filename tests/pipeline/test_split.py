"""Leakage-free splits on the real fixture shards; groups are recomputed here with RDKit to check."""

from __future__ import annotations

import polars as pl
import pytest
from rdkit import Chem
from rdkit.Chem.Scaffolds import MurckoScaffold

from grammar.formats import FORMATS
from pipeline.dedup import ExactDedupConfig, exact_dedup
from pipeline.split import (
    ProteinClusterConfig,
    SplitConfig,
    SplitError,
    TimeSplit,
    assign_splits,
    read_exclusions,
)

MINHASH = SplitConfig(fractions=(0.6, 0.2, 0.2), proteins=ProteinClusterConfig(method="minhash"))


@pytest.fixture(scope="module")
def deduped(shards) -> pl.DataFrame:
    return exact_dedup(ExactDedupConfig(), shards.records).kept


@pytest.fixture(scope="module")
def split(deduped):
    return assign_splits(MINHASH, deduped)


def one_split_per(frame: pl.DataFrame, key: str) -> None:
    spread = frame.group_by(key).agg(pl.col("split").n_unique().alias("n")).filter(pl.col("n") > 1)
    assert spread.height == 0, spread


def unmapped_products(reaction_smiles: str) -> str:
    products = Chem.MolFromSmiles(reaction_smiles.split(">")[2])
    for atom in products.GetAtoms():
        atom.SetAtomMapNum(0)
    return ".".join(sorted(Chem.MolToSmiles(Chem.MolFromSmiles(Chem.MolToSmiles(products))).split(".")))


def test_every_record_gets_a_split_and_all_three_are_used(split, deduped):
    assert split.records.height + split.excluded.height == deduped.height
    assert set(split.records["split"]) == {"train", "valid", "test"}
    assert split.protein_method == "minhash"


def test_no_scaffold_or_key_in_two_splits(split):
    molecules = split.records.filter(pl.col("domain") == "molecule")
    # Scaffolds recomputed here from the grammar text, not read from the stage's group column.
    scaffolds = [
        MurckoScaffold.MurckoScaffoldSmiles(smiles=FORMATS["molecule"].parse(t).smiles) or f"acyclic:{i}"
        for i, t in enumerate(molecules["text"])
    ]
    one_split_per(molecules.with_columns(scaffold=pl.Series(scaffolds)), "scaffold")
    assert len(set(scaffolds)) > 100
    one_split_per(split.records.filter(pl.col("dedup_key") != ""), "dedup_key")
    one_split_per(split.records, "group")


def test_reactions_split_by_product_and_views_stay_together(split):
    reactions = split.records.filter(pl.col("domain") == "reaction")
    products = [".".join(m.smiles for m in FORMATS[task].parse(text).products)
                for task, text in zip(reactions["task"], reactions["text"], strict=True)]
    one_split_per(reactions.with_columns(product=pl.Series(products)), "product")
    one_split_per(reactions, "source_id")  # react and reverse_react of one reaction


def check_protein_families(records: pl.DataFrame, shards) -> None:
    where = dict(zip(records["source_id"], records["split"], strict=True))
    for a, b in shards.planted.near + shards.planted.homologs:
        if a in where and b in where:
            assert where[a] == where[b], (a, b)
    # A complex (the pdb source's ENTRY:CHAIN:RESIDUE:LIGAND) goes with a protein of its entry.
    complexes = records.filter(pl.col("domain") == "complex")["source_id"].to_list()
    assert {c.split(":")[0] for c in complexes} >= {"1K6P", "1HVR"}
    for complex_id in complexes:
        entry = complex_id.split(":")[0]
        proteins = [s for s in where if s.startswith(f"{entry}:") and s.count(":") == 1]
        assert any(where[p] == where[complex_id] for p in proteins), (complex_id, proteins)
    one_split_per(records.filter(pl.col("domain").is_in(["protein", "complex"])), "group")


def test_protein_families_stay_together_with_the_minhash_fallback(split, shards):
    check_protein_families(split.records, shards)


def test_protein_clusters_with_mmseqs(deduped, shards):
    """The production path: method "auto" runs MMseqs2 (installed in CI by .ci/run; never a silent fallback)."""
    config = SplitConfig(fractions=(0.6, 0.2, 0.2))
    assert config.proteins.method == "auto"
    result = assign_splits(config, deduped)
    assert result.protein_method == "mmseqs", "mmseqs2 must be on PATH (Debian package mmseqs2, see .ci/run)"
    check_protein_families(result.records, shards)
    proteins = result.records.filter(pl.col("domain") == "protein")
    groups = dict(zip(proteins["source_id"], proteins["group"], strict=True))
    assert groups["1HVR:A"] == groups["1K6P:A"]  # HIV-1 protease variants, 91% identical
    assert groups["1AKI:A"] != groups["1K6P:A"]  # lysozyme is not a protease


def test_assignment_is_stable_under_shuffling_and_subsetting(split, deduped):
    again = assign_splits(MINHASH, deduped.sample(fraction=1.0, shuffle=True, seed=5))
    key = ["content_id", "source", "source_id"]
    assert again.records.sort(key).equals(split.records.sort(key))
    # Removing records never moves the others (molecule and reaction groups do not depend on the rest).
    half = deduped.filter(pl.col("domain").is_in(["molecule", "reaction"])).sample(fraction=0.5, seed=1)
    subset = assign_splits(MINHASH, half).records.select(*key, "split")
    joined = subset.join(split.records.select(*key, "split"), on=key)
    assert joined.height == subset.height and (joined["split"] == joined["split_right"]).all()


def test_fractions_are_roughly_respected_over_groups(split):
    groups = split.records.unique("group").group_by("split").len()
    shares = {s: n / groups["len"].sum() for s, n in groups.iter_rows()}
    assert abs(shares["train"] - 0.6) < 0.08 and abs(shares["test"] - 0.2) < 0.08


def test_decontamination_removes_benchmark_items_and_their_groups_from_train(deduped, shards):
    benchmark = [row["reactants>reagents>production"] for row in shards.uspto_rows[:40]]
    lines = read_exclusions(["# USPTO-50k test items, atom-mapped as published", *benchmark, ""])
    result = assign_splits(MINHASH, deduped, exclude=lines)
    banned = {unmapped_products(r) for r in benchmark}
    train = result.records.filter((pl.col("split") == "train") & (pl.col("domain") == "reaction"))
    train_products = {".".join(m.smiles for m in FORMATS[t].parse(x).products)
                      for t, x in zip(train["task"], train["text"], strict=True)}
    assert not banned & train_products
    assert result.excluded.height > 0 and set(result.excluded["split"]) == {"train"}
    kept_elsewhere = result.records.filter(pl.col("group").is_in(result.excluded["group"].implode()))
    assert set(kept_elsewhere["split"]) <= {"valid", "test"}
    baseline = assign_splits(MINHASH, deduped)
    assert result.records.height + result.excluded.height == baseline.records.height


def test_decontamination_accepts_keys_smiles_and_grammar_text(deduped):
    molecule = deduped.filter(pl.col("task") == "molecule").row(0, named=True)
    protein = deduped.filter(pl.col("task") == "protein").row(0, named=True)
    smiles = FORMATS["molecule"].parse(molecule["text"]).smiles
    group = assign_splits(MINHASH, deduped).records.filter(pl.col("content_id") == molecule["content_id"])["group"]
    for entry in (molecule["dedup_key"], smiles, molecule["text"]):
        result = assign_splits(MINHASH, deduped, exclude=[entry])
        assert result.records.filter((pl.col("group") == group.item()) & (pl.col("split") == "train")).height == 0
    result = assign_splits(MINHASH, deduped, exclude=[protein["text"]])
    excluded_or_held_out = result.excluded["content_id"].to_list() + result.records.filter(
        pl.col("split") != "train")["content_id"].to_list()
    assert protein["content_id"] in excluded_or_held_out


def test_time_split_sends_groups_by_their_earliest_year(deduped):
    config = SplitConfig(proteins=ProteinClusterConfig(method="minhash"), time_split=TimeSplit(2005, 2010))
    result = assign_splits(config, deduped)
    reactions = result.records.filter(pl.col("domain") == "reaction").with_columns(
        year=pl.col("metadata").str.json_path_match("$.year").cast(pl.Int64)
    )
    dated = reactions.filter(pl.col("year").is_not_null())
    assert dated.height > 100
    first_year = dated.group_by("group").agg(pl.col("year").min(), pl.col("split").first())
    for _, year, split_name in first_year.iter_rows():
        assert split_name == ("train" if year < 2005 else "valid" if year < 2010 else "test")
    assert set(first_year["split"]) == {"train", "valid", "test"}


def test_bad_records_and_entries_are_named(deduped):
    bad_text = pl.when(pl.int_range(3) == 1).then(pl.lit("<MoleculeS>C1CC<MoleculeE>")).otherwise(pl.col("text"))
    molecules = deduped.filter(pl.col("task") == "molecule").head(3)
    broken = molecules.with_columns(text=bad_text, split_group=pl.lit(""))  # no ingest group: read from the text
    bad_id = broken["content_id"][1]
    with pytest.raises(SplitError, match=bad_id):
        assign_splits(MINHASH, broken)
    with pytest.raises(SplitError, match="exclusion entry 2"):
        assign_splits(MINHASH, deduped, exclude=["CCO", "C1CC(not smiles"])
    with pytest.raises(ValueError, match="fractions"):
        SplitConfig(fractions=(0.5, 0.5, 0.5))


@pytest.mark.slow
def test_ray_group_keys_give_the_same_split(split, deduped):
    from dataclasses import replace

    from pipeline.ray_runtime import ray_session

    with ray_session(num_cpus=2):
        on_ray = assign_splits(replace(MINHASH, use_ray=True, batch_rows=128), deduped)
    assert on_ray.records.equals(split.records)
