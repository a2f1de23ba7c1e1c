"""Exact dedup on the real fixture shards: planted cross-source duplicates, the kept rule, streaming."""

from __future__ import annotations

import polars as pl
from rdkit import Chem

from grammar.formats import FORMATS
from pipeline.dedup import ExactDedupConfig, StreamingConfig, exact_dedup, exact_dedup_files


def kept_source_ids(result) -> set[str]:
    return set(result.kept["source_id"].to_list())


def planted_groups(pairs: list[tuple[str, str]]) -> list[set[str]]:
    """Join planted pairs that share a record (a molecule planted twice forms a group of three)."""
    groups: list[set[str]] = []
    for a, b in pairs:
        touching = [g for g in groups if a in g or b in g]
        merged = {a, b}.union(*touching)
        groups = [g for g in groups if g not in touching] + [merged]
    return groups


def test_planted_duplicates_are_found_and_each_names_its_kept_record(shards):
    result = exact_dedup(ExactDedupConfig(), shards.records)
    assert len(shards.planted.exact) >= 11
    for group in planted_groups(shards.planted.exact):
        members = pl.col("source_id").is_in(list(group))
        for (task,), rows in shards.records.filter(members).group_by("task"):
            kept = result.kept.filter(members & (pl.col("task") == task))
            assert kept.height == 1, f"{group} ({task}): {kept.height} kept"
            dropped = result.duplicates.filter(members & (pl.col("task") == task))
            assert dropped.height == rows.height - 1
            assert set(dropped["duplicate_of_source_id"]) == {kept["source_id"].item()}
            assert set(dropped["reason"]) == {"exact"}


def test_every_input_record_is_kept_or_counted(shards):
    result = exact_dedup(ExactDedupConfig(), shards.records)
    assert result.kept.height + result.duplicates.height == shards.records.height
    kept_ids = set(zip(result.kept["content_id"], result.kept["source_id"], strict=True))
    for row in result.duplicates.iter_rows(named=True):
        assert (row["duplicate_of"], row["duplicate_of_source_id"]) in kept_ids
    assert result.counts() == {"exact": result.duplicates.height}


def test_no_two_kept_molecules_share_an_inchikey(shards):
    # Independent of the stored keys: recompute InChIKeys from the grammar text with RDKit.
    result = exact_dedup(ExactDedupConfig(), shards.records)
    molecules = result.kept.filter(pl.col("task") == "molecule")
    keys = [Chem.MolToInchiKey(Chem.MolFromSmiles(FORMATS["molecule"].parse(t).smiles)) for t in molecules["text"]]
    assert len(keys) == len(set(keys))
    before = shards.records.filter(pl.col("task") == "molecule")
    assert len(set(keys)) == len(
        {Chem.MolToInchiKey(Chem.MolFromSmiles(FORMATS["molecule"].parse(t).smiles)) for t in before["text"]}
    )


def test_react_and_reverse_react_views_are_not_duplicates_of_each_other(shards):
    result = exact_dedup(ExactDedupConfig(), shards.records)
    reactions = result.kept.filter(pl.col("domain") == "reaction")
    tasks = reactions["task"].value_counts()
    assert dict(tasks.iter_rows()) == {"react": reactions.height // 2, "reverse_react": reactions.height // 2}
    assert reactions["dedup_key"].n_unique() == reactions.height // 2


def test_kept_rule_is_deterministic_and_follows_source_priority(shards):
    shuffled = shards.records.sample(fraction=1.0, shuffle=True, seed=3)
    first = exact_dedup(ExactDedupConfig(), shards.records)
    second = exact_dedup(ExactDedupConfig(), shuffled)
    assert first.kept.equals(second.kept)
    assert first.duplicates.equals(second.duplicates)
    # With "smiles" first, every planted molecule pair keeps the record from the "smiles" source.
    preferred = kept_source_ids(exact_dedup(ExactDedupConfig(source_priority=("smiles",)), shards.records))
    smiles_pairs = [(a, b) for a, b in shards.planted.exact if b.startswith("smiles:")]
    assert smiles_pairs
    for original, _ in smiles_pairs:
        assert original not in preferred
    # Without priority, the smallest content_id wins among records with one key.
    for key, group in shards.records.filter(pl.col("task") == "molecule").group_by("dedup_key"):
        winner = group.sort("content_id", "source", "source_id").row(0, named=True)
        assert winner["source_id"] in kept_source_ids(first), key


def test_crystal_groups_use_the_structure_matcher(shards):
    result = exact_dedup(ExactDedupConfig(), shards.records)
    strained = result.duplicates.filter(pl.col("source_id") == "LiFePO4_strained")
    assert strained["duplicate_of_source_id"].to_list() == ["LiFePO4"]
    texts = dict(zip(shards.records["source_id"], shards.records["text"], strict=True))
    assert texts["LiFePO4"] != texts["LiFePO4_strained"]  # different text: only the matcher can tell
    # With matching off, the group key alone decides (the documented coarse mode).
    coarse = exact_dedup(ExactDedupConfig(match_structures=False), shards.records)
    assert "LiFePO4_strained" in set(coarse.duplicates["source_id"])


def test_streaming_path_matches_the_in_memory_path(shards, tmp_path):
    paths = sorted((shards.root / "records").glob("*.parquet"))
    records = pl.concat([pl.read_parquet(p) for p in paths])
    expected = exact_dedup(ExactDedupConfig(), records)
    # Tiny batches and buckets so that every pass really runs in many pieces.
    streamed = exact_dedup_files(ExactDedupConfig(), paths, tmp_path, StreamingConfig(batch_rows=64, bucket_rows=100))
    assert streamed.rows_in == records.height
    kept = pl.concat([pl.read_parquet(p) for p in streamed.kept_files])
    assert streamed.rows_kept == kept.height == expected.kept.height
    assert kept.sort("content_id", "source", "source_id", "source_uri").equals(expected.kept)
    duplicates = pl.read_parquet(streamed.duplicates_file).drop("_file", "_row")
    assert duplicates.sort("content_id", "source", "source_id").equals(expected.duplicates)
    assert not (tmp_path / "_buckets").exists()
