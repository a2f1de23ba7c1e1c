"""Domain mixing: weights from the formulas, epoch caps, and the report, on the fixture's real counts."""

from __future__ import annotations

import math

import polars as pl
import pytest

from pipeline.dedup import ExactDedupConfig, exact_dedup
from pipeline.mix import MixConfig, mix
from pipeline.split import ProteinClusterConfig, SplitConfig, assign_splits


@pytest.fixture(scope="module")
def counts(shards) -> tuple[dict, dict]:
    """Tokens (EOD included) and documents per split and domain of the split fixture."""
    kept = exact_dedup(ExactDedupConfig(), shards.records).kept
    records = assign_splits(SplitConfig(proteins=ProteinClusterConfig(method="minhash")), kept).records
    grouped = records.group_by("split", "domain").agg(docs=pl.len(), tokens=pl.col("n_tokens").sum() + pl.len())
    tokens, documents = {}, {}
    for split, domain, docs, n in grouped.iter_rows():
        tokens.setdefault(split, {})[domain] = n
        documents.setdefault(split, {})[domain] = docs
    return tokens, documents


def shares_of(mixture, split: str) -> dict[str, float]:
    return {s.domain: s.weight for s in mixture.shares if s.split == split}


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0])
def test_temperature_weights_follow_the_formula(counts, temperature):
    tokens, documents = counts
    mixture = mix(MixConfig(temperature=temperature), tokens, documents)
    for split, per_domain in tokens.items():
        raw = {d: n ** (1 / temperature) for d, n in per_domain.items()}
        expected = {d: w / sum(raw.values()) for d, w in raw.items()}
        got = shares_of(mixture, split)
        assert got == pytest.approx(expected, rel=1e-12)
        # Without a budget or cap, effective tokens are weight x the split's tokens.
        total = sum(per_domain.values())
        for share in (s for s in mixture.shares if s.split == split):
            assert share.effective_tokens == pytest.approx(share.weight * total)
            assert share.epochs == pytest.approx(share.weight * total / share.tokens)
    if temperature == 1.0:  # natural proportions: every domain exactly one epoch
        assert all(s.epochs == pytest.approx(1.0) for s in mixture.shares)


def test_explicit_weights_are_normalized_per_split(counts):
    tokens, documents = counts
    mixture = mix(MixConfig(weights={"molecule": 3, "reaction": 1, "nonexistent": 5}), tokens, documents)
    train = mixture.weights("train")
    assert train == pytest.approx({"molecule": 0.75, "reaction": 0.25})
    assert "protein" not in train  # present but unweighted: left out of the mixture
    assert shares_of(mixture, "train")["protein"] == 0.0


def test_epoch_cap_pins_small_domains_and_keeps_the_others_ratios(counts):
    tokens, documents = counts
    budget = 2 * sum(tokens["train"].values())
    config = MixConfig(temperature=3.0, max_epochs=4.0, budget={"train": budget})
    mixture = mix(config, tokens, documents)
    train = [s for s in mixture.shares if s.split == "train"]
    assert math.isclose(sum(s.weight for s in train), 1.0)
    assert all(s.epochs <= 4.0 + 1e-9 for s in train)
    pinned = [s for s in train if s.capped]
    free = [s for s in train if not s.capped]
    assert pinned and free
    assert all(s.epochs == pytest.approx(4.0) for s in pinned)
    # Uncapped domains keep their temperature ratios among themselves.
    raw = {d: n ** (1 / 3.0) for d, n in tokens["train"].items()}
    for a in free:
        for b in free:
            assert a.weight / b.weight == pytest.approx(raw[a.domain] / raw[b.domain])
    assert mixture.budgets["train"]["effective"] == pytest.approx(budget)


def test_budget_shrinks_when_every_domain_hits_the_cap(counts):
    tokens, documents = counts
    total = sum(tokens["train"].values())
    mixture = mix(MixConfig(max_epochs=2.0, budget={"train": 100 * total}), tokens, documents)
    assert mixture.budgets["train"]["effective"] == pytest.approx(2.0 * total)
    assert all(s.epochs == pytest.approx(2.0) for s in mixture.shares if s.split == "train")


def test_report_lists_every_split_and_domain(counts):
    tokens, documents = counts
    mixture = mix(MixConfig(temperature=2.0, max_epochs=3.0), tokens, documents)
    table = mixture.table()
    for split, per_domain in tokens.items():
        for domain in per_domain:
            assert any(line.split()[:2] == [split, domain] for line in table.splitlines())
    report = mixture.as_dict()
    assert {(s["split"], s["domain"]) for s in report["shares"]} == {(s, d) for s in tokens for d in tokens[s]}
    assert mixture.splits()[0] == "train"


def test_bad_configs_are_refused(counts):
    tokens, documents = counts
    with pytest.raises(ValueError, match="temperature"):
        MixConfig(temperature=0)
    with pytest.raises(ValueError, match="max_epochs"):
        MixConfig(max_epochs=0)
    with pytest.raises(ValueError, match="positive weight"):
        mix(MixConfig(weights={"nonexistent": 1.0}), tokens, documents)
