"""The default mix reproduces LOGOS's published token shares by domain, as Megatron actually samples them.

Reference: LOGOS (arXiv 2606.16905), data volume by domain in tokens, as published (written here from the paper's
figures, not imported from the code under test): protein 28.9B, antibody 3.0B, interaction 4.6B, protein-pocket
5.8B, molecule 2.1B, reaction + material 0.47B. The weights go through megatron-core's own blending-index builder
(the C++ helper ``BlendedDataset`` uses), which draws fixed-length samples, so a sample share is a token share.
"""

from __future__ import annotations

import numpy as np
import pytest
from megatron.core.datasets import helpers_cpp

from pipeline.mix import MixConfig, mix

PUBLISHED_B = {"protein": 28.9, "antibody": 3.0, "complex": 4.6, "pocket": 5.8, "molecule": 2.1,
               "reaction+material": 0.47}
# Tokens available per domain here: deliberately nothing like LOGOS's proportions (the defaults must not follow them).
AVAILABLE = {"protein": 1_000, "antibody": 50_000, "complex": 7_000, "pocket": 300, "molecule": 90_000,
             "reaction": 20_000, "material": 5_000}
SAMPLES = 200_000


def megatron_draws(weights: dict[str, float], samples: int) -> dict[str, int]:
    """How many of ``samples`` megatron-core's blending indices give each domain."""
    domains = sorted(weights)
    dataset_index = np.zeros(samples, dtype=np.int16)
    dataset_sample_index = np.zeros(samples, dtype=np.int64)
    helpers_cpp.build_blending_indices(dataset_index, dataset_sample_index,
                                       np.array([weights[d] for d in domains], dtype=np.float64),
                                       len(domains), samples, False)
    return dict(zip(domains, np.bincount(dataset_index, minlength=len(domains)).tolist(), strict=True))


def test_default_weights_give_logos_published_token_shares_when_every_domain_is_present():
    mixture = mix(MixConfig(), {"train": AVAILABLE}, {"train": {d: 1 for d in AVAILABLE}})
    draws = megatron_draws(mixture.weights("train"), SAMPLES)
    # The tolerance comes from the sampling itself: the blender's rounding, the largest distance in this draw between
    # a domain's count and weight x samples (the greedy blender keeps it within a couple of samples).
    weights = mixture.weights("train")
    rounding = max(abs(draws[d] - weights[d] * SAMPLES) for d in draws)
    assert rounding <= 2
    draws["reaction+material"] = draws.pop("reaction") + draws.pop("material")
    total_b = sum(PUBLISHED_B.values())
    for group, billions in PUBLISHED_B.items():
        members = group.count("+") + 1
        assert draws[group] / SAMPLES == pytest.approx(billions / total_b, abs=members * rounding / SAMPLES + 1e-12)
    # LOGOS publishes only the sum of reactions and materials: here it is shared by the tokens each has.
    assert weights["reaction"] / weights["material"] == pytest.approx(AVAILABLE["reaction"] / AVAILABLE["material"])


def test_missing_domains_drop_out_and_the_rest_keep_logos_ratios():
    present = {"protein": 500, "pocket": 500, "molecule": 500, "material": 500}  # e.g. no antibody source yet
    weights = mix(MixConfig(), {"train": present}, {"train": present}).weights("train")
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["protein"] / weights["pocket"] == pytest.approx(28.9 / 5.8)
    assert weights["material"] / weights["molecule"] == pytest.approx(0.47 / 2.1)  # all of the pair's share


def test_a_temperature_or_explicit_weights_still_override_the_default():
    tokens = {"train": {"protein": 100, "molecule": 300}}
    assert mix(MixConfig(temperature=1.0), tokens, tokens).weights("train") == {"protein": 0.25, "molecule": 0.75}
    assert mix(MixConfig(weights={"protein": 1, "molecule": 1}), tokens, tokens).weights("train") == {
        "protein": 0.5, "molecule": 0.5}


def test_every_grammar_domain_has_a_default_weight():
    from grammar.formats import DOMAINS
    from pipeline.mix import LOGOS_TOKEN_SHARES

    assert {d for name in LOGOS_TOKEN_SHARES for d in name.split("+")} == set(DOMAINS)
