"""Domain mixing: per-domain sampling weights for each split, and what they mean in tokens and epochs.

Weights are token shares (a Megatron blend weight is the share of fixed-length samples, hence of
tokens). Either explicit per-domain weights (normalized over the domains a split has; a domain with
data but no weight is left out of the mixture), or temperature sampling ``p_i ∝ n_i^(1/T)`` over the
domains' token counts ``n_i`` (T=1: natural proportions; larger T flattens towards uniform). With
neither set, the default is ``LOGOS_TOKEN_SHARES``: LOGOS's published token volume per domain, so a
corpus holding every domain is mixed in LOGOS's proportions whatever each domain's size here (domains
missing here drop out and the rest are renormalized). A weight whose name joins domains with ``+``
(``reaction+material``: LOGOS publishes only their sum) is shared among them in proportion to their tokens.

The token budget of a split (default: all its tokens, i.e. one natural pass) turns a weight into
effective tokens ``p_i * B`` and epochs ``p_i * B / n_i``. With ``max_epochs``, a domain whose epochs
would exceed the cap is pinned at the cap and the freed share goes to the others in proportion to
their weights (repeated until no domain is over); when every domain is pinned, the budget shrinks to
what the caps allow, and the report says so. Token counts include the EOD the export adds per
document, because Megatron samples those too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

SPLIT_ORDER = ("train", "valid", "test", "all")
# LOGOS (arXiv 2606.16905), data volume by domain in billions of tokens: protein sequences, antibodies,
# protein-ligand interactions (complexes), protein-pocket records, molecules, reactions and materials together.
LOGOS_TOKEN_SHARES: dict[str, float] = {
    "protein": 28.9, "antibody": 3.0, "complex": 4.6, "pocket": 5.8, "molecule": 2.1, "reaction+material": 0.47,
}


def split_rank(split: str) -> int:
    return SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER)


@dataclass(frozen=True)
class MixConfig:
    weights: dict[str, float] | None = None  # explicit per-domain weights ("a+b": shared by tokens)
    temperature: float | None = None  # temperature sampling, when no weights; neither: LOGOS_TOKEN_SHARES
    max_epochs: float | None = None  # cap on epochs per domain and split
    budget: dict[str, int] = field(default_factory=dict)  # tokens per split; default: the split's tokens

    def __post_init__(self) -> None:
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.weights is not None and (not self.weights or min(self.weights.values()) < 0):
            raise ValueError(f"weights must be non-negative and not empty, got {self.weights}")
        if self.max_epochs is not None and self.max_epochs <= 0:
            raise ValueError(f"max_epochs must be positive, got {self.max_epochs}")


@dataclass(frozen=True)
class DomainShare:
    split: str
    domain: str
    documents: int
    tokens: int  # available, EOD included
    weight: float
    effective_tokens: float
    epochs: float
    capped: bool


@dataclass
class Mixture:
    shares: list[DomainShare]
    budgets: dict[str, dict[str, float]]  # split -> requested and effective budget

    def weights(self, split: str) -> dict[str, float]:
        return {s.domain: s.weight for s in self.shares if s.split == split and s.weight > 0}

    def splits(self) -> list[str]:
        return sorted({s.split for s in self.shares}, key=lambda s: split_rank(s))

    def as_dict(self) -> dict:
        return {"shares": [asdict(s) for s in self.shares], "budgets": self.budgets}

    @classmethod
    def from_dict(cls, raw: dict) -> Mixture:
        return cls([DomainShare(**s) for s in raw["shares"]], raw["budgets"])

    def table(self) -> str:
        lines = [f"{'split':6} {'domain':9} {'docs':>9} {'tokens':>12} {'weight':>7} {'eff. tokens':>13} {'epochs':>7}"]
        for s in self.shares:
            cap = " (cap)" if s.capped else ""
            lines.append(
                f"{s.split:6} {s.domain:9} {s.documents:9d} {s.tokens:12d} {s.weight:7.4f} "
                f"{s.effective_tokens:13.0f} {s.epochs:7.3f}{cap}"
            )
        return "\n".join(lines)


def base_weights(config: MixConfig, tokens: dict[str, int]) -> dict[str, float]:
    present = {d: n for d, n in tokens.items() if n > 0}
    if config.weights is None and config.temperature is not None:
        raw = {d: math.pow(n, 1.0 / config.temperature) for d, n in present.items()}
    else:
        raw = domain_weights(LOGOS_TOKEN_SHARES if config.weights is None else config.weights, present)
    total = sum(raw.values())
    if total <= 0:
        raise ValueError(f"no domain with data has a positive weight (domains {sorted(present)}, weights {raw})")
    return {d: w / total for d, w in raw.items()}


def domain_weights(weights: dict[str, float], present: dict[str, int]) -> dict[str, float]:
    """Unnormalized weight of each present domain; a ``a+b`` weight is shared by a and b in proportion to
    their tokens (all of it to whichever is present)."""
    raw = {d: 0.0 for d in present}
    for name, weight in weights.items():
        members = {d: present[d] for d in name.split("+") if d in present}
        total = sum(members.values())
        for domain, n in members.items():
            raw[domain] += float(weight) * n / total
    return raw


def capped_weights(weights: dict[str, float], tokens: dict[str, int], budget: float, max_epochs: float | None):
    """Pin domains over the epoch cap at the cap; share the rest by weight. Returns weights, pinned, budget."""
    pinned: dict[str, float] = {}
    if max_epochs is None:
        return weights, set(), budget
    while True:
        free = {d: w for d, w in weights.items() if d not in pinned and w > 0}
        room = 1.0 - sum(pinned.values())
        free_total = sum(free.values())
        share = {d: room * w / free_total for d, w in free.items()} if free_total > 0 else {}
        over = {d for d, p in share.items() if p * budget > max_epochs * tokens[d]}
        if not over:
            break
        pinned.update({d: max_epochs * tokens[d] / budget for d in over})
    result = {d: pinned.get(d, share.get(d, 0.0)) for d in weights}
    total = sum(result.values())
    if total < 1.0 - 1e-12:  # every weighted domain is pinned: the caps cannot fill the budget
        budget *= total
        result = {d: w / total for d, w in result.items()}
    return result, set(pinned), budget


def mix(config: MixConfig, tokens: dict[str, dict[str, int]], documents: dict[str, dict[str, int]]) -> Mixture:
    """Weights and report per split from token counts (EOD included) and document counts per domain."""
    shares, budgets = [], {}
    for split in sorted(tokens, key=lambda s: split_rank(s)):
        counts = tokens[split]
        requested = float(config.budget.get(split, sum(counts.values())))
        weights, pinned, budget = capped_weights(base_weights(config, counts), counts, requested, config.max_epochs)
        budgets[split] = {"requested": requested, "effective": budget}
        for domain in sorted(counts):
            weight, available = weights.get(domain, 0.0), counts[domain]
            effective = weight * budget
            epochs = effective / available if available else 0.0
            shares.append(
                DomainShare(split, domain, documents[split][domain], available, weight, effective, epochs,
                            domain in pinned)
            )
    return Mixture(shares, budgets)
