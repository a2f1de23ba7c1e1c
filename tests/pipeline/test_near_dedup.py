"""Near-duplicate dedup on the real fixture shards, checked against exact Jaccard computed here."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from pipeline.dedup import ExactDedupConfig, exact_dedup
from pipeline.near_dedup import NearDedupConfig, near_dedup, shingle_hashes


def shingles(ids: list[int], n: int) -> set[tuple[int, ...]]:
    return {tuple(ids[i : i + n]) for i in range(max(len(ids) - n + 1, 1))}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


@pytest.fixture(scope="module")
def deduped(shards) -> pl.DataFrame:
    return exact_dedup(ExactDedupConfig(), shards.records).kept


def test_planted_point_mutants_collapse_to_one_record(shards, deduped):
    result = near_dedup(NearDedupConfig(), deduped)
    family = {name for pair in shards.planted.near for name in pair}
    assert len(family & set(result.kept["source_id"])) == 1
    dropped = result.duplicates.filter(pl.col("source_id").is_in(list(family)))
    assert dropped.height == len(family) - 1
    assert set(dropped["reason"]) == {"near"}
    assert set(dropped["duplicate_of_source_id"]) <= family
    assert result.kept.height + result.duplicates.height == deduped.height


def test_clusters_agree_with_exact_jaccard_of_token_shingles(deduped):
    # Ground truth from the token ids, pair by pair within each task (molecules and proteins): every
    # pair far above the 0.8 threshold is in one cluster (recall), and every clustered record is truly
    # similar to some other member (precision; MinHash with 128 slots has a standard error ~0.035).
    config = NearDedupConfig(domains=None)
    result = near_dedup(config, deduped)
    root = dict(zip(result.duplicates["content_id"], result.duplicates["duplicate_of"], strict=True))
    checked = 0
    for task in ("molecule", "protein"):
        rows = deduped.filter(pl.col("task") == task)
        sets = {c: shingles(ids, config.shingle) for c, ids in zip(rows["content_id"], rows["input_ids"], strict=True)}
        members: dict[str, list[str]] = {}
        for content_id in sets:
            members.setdefault(root.get(content_id, content_id), []).append(content_id)
        for a, b in itertools.combinations(sets, 2):
            if jaccard(sets[a], sets[b]) >= 0.92:
                assert root.get(a, a) == root.get(b, b), (task, a, b)
                checked += 1
        for cluster in (m for m in members.values() if len(m) > 1):
            for member in cluster:
                best = max(jaccard(sets[member], sets[other]) for other in cluster if other != member)
                assert best >= 0.6, (task, member, best)
    assert checked >= 3


def test_default_domains_leave_molecule_analogs_alone(deduped):
    default = near_dedup(NearDedupConfig(), deduped)
    assert set(default.duplicates["domain"]) == {"protein"}
    everything = near_dedup(NearDedupConfig(domains=None), deduped)
    assert everything.duplicates.filter(pl.col("domain") == "molecule").height > 0  # EGFR analog series
    assert set(everything.duplicates["task"]) >= {"molecule", "protein"}
    # Records are only compared within one task.
    tasks = dict(zip(deduped["content_id"], deduped["task"], strict=True))
    assert all(tasks[d] == tasks[k] for d, k in everything.duplicates.select("content_id", "duplicate_of").iter_rows())


def test_reported_similarity_estimates_the_exact_jaccard(deduped):
    config = NearDedupConfig(domains=None)
    result = near_dedup(config, deduped)
    ids = dict(zip(deduped["content_id"], deduped["input_ids"], strict=True))
    errors = [
        abs(score - jaccard(shingles(ids[d], config.shingle), shingles(ids[k], config.shingle)))
        for d, k, score in result.duplicates.select("content_id", "duplicate_of", "similarity").iter_rows()
    ]
    assert len(errors) > 50
    assert float(np.mean(errors)) < 0.05


def test_shingle_hashes_follow_the_token_ngrams():
    rows = [[5, 6, 7, 8, 9, 5, 6, 7, 8], [1, 2], [], [3, 3, 3, 3, 3, 3]]
    hashes, offsets = shingle_hashes(pa.array(rows, pa.list_(pa.int32())), 4)
    assert offsets.tolist() == [0, 6, 7, 7, 10]
    for i, ids in enumerate(rows):
        row = hashes[offsets[i] : offsets[i + 1]]
        expected = [tuple(ids[j : j + 4]) for j in range(max(len(ids) - 3, 1))] if ids else []
        assert len(row) == len(expected)
        assert len(set(row.tolist())) == len(set(expected))  # equal n-grams hash equal, others differ
    # A sliced array (non-zero first offset) hashes the same as a fresh one.
    sliced, sliced_offsets = shingle_hashes(pa.array(rows, pa.list_(pa.int32())).slice(1), 4)
    assert sliced.tolist() == hashes[6:].tolist() and (sliced_offsets + 6).tolist() == offsets[1:].tolist()


def test_deterministic_and_order_independent(deduped):
    config = NearDedupConfig(domains=None)
    first = near_dedup(config, deduped)
    second = near_dedup(config, deduped.sample(fraction=1.0, shuffle=True, seed=11))
    assert first.kept.equals(second.kept)
    assert first.duplicates.equals(second.duplicates)


def test_nothing_to_compare_is_no_duplicates(deduped):
    molecules = deduped.filter(pl.col("domain") == "molecule")
    assert near_dedup(NearDedupConfig(), molecules).kept.height == molecules.height  # no protein at all
    single = deduped.filter(pl.col("domain") == "protein").head(1)
    result = near_dedup(NearDedupConfig(domains=None), single)
    assert result.kept.height == 1 and result.duplicates.height == 0


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="multiple of bands"):
        NearDedupConfig(num_perm=128, bands=7)
    with pytest.raises(ValueError, match="threshold"):
        NearDedupConfig(threshold=0.0)


@pytest.mark.slow
def test_ray_signatures_give_the_same_result(deduped):
    from pipeline.ray_runtime import ray_session

    config = NearDedupConfig(domains=None)
    local = near_dedup(config, deduped)
    with ray_session(num_cpus=2):
        on_ray = near_dedup(NearDedupConfig(domains=None, use_ray=True, batch_rows=256), deduped)
    assert local.kept.equals(on_ray.kept)
    assert local.duplicates.equals(on_ray.duplicates)
