"""The report's figures: matplotlib PNGs sized to fit the page, each with the caption it is shown under.

Choices a reader of the report would otherwise trip over:
- every figure is at most ``MAX_WIDTH_IN`` x ``DPI`` = 960 px wide (the page's CSS also caps images at its
  width), and grids of small multiples wrap after three panels instead of growing sideways;
- an axis of counts gets a log scale when the values span two orders of magnitude or more (the demo's
  reactions outnumber its proteins ~300:1, and a small domain must not vanish), and integer ticks;
- bars carry their count, so a single reject reads "1", not a bar on a 0-1 axis;
- series that coincide (several metrics all at 0, two validation losses within 0.1) are dodged sideways
  by a few percent of the step range and drawn with distinct markers, so none hides another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

DPI = 100
MAX_WIDTH_IN = 9.6
LOG_SPAN = 100  # max/min ratio of positive counts from which an axis is logarithmic
MARKERS = "osD^v<>ph*"
LINESTYLES = ("-", "--", ":", "-.")
SPLIT_ORDER = ("train", "valid", "test")


@dataclass(frozen=True)
class Figure:
    """A written PNG and the sentence shown under it."""

    path: Path
    caption: str


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path


def needs_log(values: list[float]) -> bool:
    positive = [v for v in values if v > 0]
    return bool(positive) and max(positive) / min(positive) >= LOG_SPAN


def _count_axis(ax, values: list[float], axis: str = "x") -> bool:
    """Integer ticks on a count axis, logarithmic when the counts span orders of magnitude."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    target = ax.xaxis if axis == "x" else ax.yaxis
    log = needs_log(values)
    if log:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    else:
        target.set_major_locator(MaxNLocator(integer=True))
        (ax.set_xlim if axis == "x" else ax.set_ylim)(0, max([*values, 1]) * 1.15)
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 or v == 0 else ""))
    return log


def _decade_below(values: list[float]) -> float:
    """The left end of a logarithmic count axis: half the power of ten at or below the smallest count, so
    that a bar of the smallest count (1 on a log axis starting at 1 would have no length) still shows."""
    return 0.5 * 10.0 ** math.floor(math.log10(min(v for v in values if v > 0)))


def _bars(ax, labels: list[str], values: list[int], color: str, xlabel: str, title: str) -> bool:
    bars = ax.barh(labels, values, color=color)
    log = _count_axis(ax, values)
    if log:
        ax.set_xlim(_decade_below(values), max(values) * 4)
    ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=3, fontsize=8)
    ax.set(xlabel=xlabel + (" (log scale)" if log else ""), title=title)
    return log


def plot_volume(records: pl.DataFrame, out: Path) -> Figure:
    """Records and tokens per domain in this version (all splits together)."""
    plt = _pyplot()
    table = records.group_by("domain").agg(pl.len().alias("records"), pl.col("n_tokens").sum()).sort("n_tokens")
    fig, (left, right) = plt.subplots(1, 2, figsize=(MAX_WIDTH_IN, 0.35 * table.height + 1.6), sharey=True)
    domains = table["domain"].to_list()
    _bars(left, domains, table["n_tokens"].to_list(), "#3b6ea5", "tokens", "tokens per domain")
    _bars(right, domains, table["records"].to_list(), "#6b9e4a", "records", "records per domain")
    fig.tight_layout()
    return Figure(_save(fig, out / "mix_by_domain.png"),
                  "Data volume of this version by domain, all splits together: tokens (left) and records (right).")


def plot_mixture(mixture: dict[str, Any], out: Path) -> Figure | None:
    """Each domain's share of the training tokens as stored (natural) and as sampled (mixture weight)."""
    train = sorted((s for s in mixture.get("shares", []) if s["split"] == "train"), key=lambda s: s["weight"])
    if not train:
        return None
    plt = _pyplot()
    total = sum(s["tokens"] for s in train) or 1
    fig, ax = plt.subplots(figsize=(MAX_WIDTH_IN * 0.7, 0.45 * len(train) + 1.4))
    rows = range(len(train))
    stored = ax.barh([r + 0.2 for r in rows], [s["tokens"] / total for s in train], height=0.4, color="#9db4cf",
                     label="share of stored tokens")
    sampled = ax.barh([r - 0.2 for r in rows], [s["weight"] for s in train], height=0.4, color="#c46b2d",
                      label="sampling weight")
    for bars in (stored, sampled):
        ax.bar_label(bars, labels=[f"{b.get_width():.1%}" for b in bars], padding=3, fontsize=7)
    ax.set_yticks(list(rows), [s["domain"] for s in train])
    ax.set(xlabel="fraction of training tokens", title="training mixture", xlim=(0, 1))
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return Figure(_save(fig, out / "mixture.png"),
                  "Training mixture: each domain's share of the stored training tokens and its sampling weight "
                  "after temperature scaling and epoch caps.")


def plot_lengths(records: pl.DataFrame, out: Path) -> Figure:
    """Token-length histograms, one panel per domain, at most three per row."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    domains = sorted(records["domain"].unique())
    columns = min(3, len(domains))
    rows = -(-len(domains) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(MAX_WIDTH_IN, 2.3 * rows + 0.3), squeeze=False)
    for ax, domain in zip(axes.flat, domains, strict=False):
        lengths = records.filter(pl.col("domain") == domain)["n_tokens"].to_numpy()
        ax.hist(lengths, bins=min(30, max(5, len(set(lengths.tolist())))), color="#3b6ea5")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=f"{domain} ({len(lengths):,} records)", xlabel="tokens per record", ylabel="records")
    for ax in list(axes.flat)[len(domains):]:
        ax.axis("off")
    fig.tight_layout()
    return Figure(_save(fig, out / "token_lengths.png"),
                  "Tokens per record, by domain: each panel has its own token range.")


def plot_splits(records: pl.DataFrame, out: Path) -> Figure | None:
    """Records per split and domain as grouped bars (stacked bars would hide small splits)."""
    if "split" not in records.columns:
        return None
    plt = _pyplot()
    counts = {(d, s): n for d, s, n in records.group_by("domain", "split").len().iter_rows()}
    domains = sorted({d for d, _ in counts})
    splits = [s for s in SPLIT_ORDER if any(k[1] == s for k in counts)]
    fig, ax = plt.subplots(figsize=(MAX_WIDTH_IN * 0.7, 0.6 * len(domains) + 1.4))
    height = 0.8 / len(splits)
    for i, split in enumerate(splits):
        values = [counts.get((d, split), 0) for d in domains]
        ax.barh([r + (len(splits) / 2 - i - 0.5) * height for r in range(len(domains))], values, height=height,
                label=split)
    ax.set_yticks(range(len(domains)), domains)
    log = _count_axis(ax, list(counts.values()))
    if log:
        ax.set_xlim(_decade_below(list(counts.values())), max(counts.values()) * 2)
    ax.set(xlabel="records" + (" (log scale)" if log else ""), title="records per split")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return Figure(_save(fig, out / "splits.png"),
                  "Records per split and domain; a domain missing from a split has no bar there.")


def plot_counts(counts: dict[str, int], title: str, xlabel: str, out: Path, name: str, caption: str) -> Figure | None:
    if not counts:
        return None
    plt = _pyplot()
    labels = sorted(counts, key=lambda k: (counts[k], k))
    fig, ax = plt.subplots(figsize=(MAX_WIDTH_IN * 0.7, 0.4 * len(counts) + 1.3))
    _bars(ax, labels, [counts[k] for k in labels], "#8a4f7d", xlabel, title)
    fig.tight_layout()
    return Figure(_save(fig, out / name), caption)


def _dodged(ax, series: dict[str, list[tuple[int, float]]], span: float, **style) -> None:
    """Plot each series shifted sideways by a few percent of ``span`` with its own marker."""
    names = sorted(series)
    for i, name in enumerate(names):
        shift = (i - (len(names) - 1) / 2) * 0.02 * span
        steps, values = zip(*series[name], strict=True)
        ax.plot([s + shift for s in steps], values, marker=MARKERS[i % len(MARKERS)], label=name,
                **{"linestyle": LINESTYLES[i % len(LINESTYLES)], **style})


def plot_loss(train: list[tuple[int, float]], valid: dict[str, list[tuple[int, float]]], out: Path) -> Figure | None:
    if not train:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(MAX_WIDTH_IN * 0.7, 3.6))
    ax.plot(*zip(*train, strict=True), color="#444444", label="train")
    span = max(s for s, _ in train) - min(s for s, _ in train) or 1
    _dodged(ax, valid, span, linestyle="--", markerfacecolor="none", markersize=7)
    ax.set(title="training loss", xlabel="step", ylabel="loss (cross-entropy, nats)")
    ax.legend(fontsize=8, ncols=2)
    fig.tight_layout()
    return Figure(_save(fig, out / "loss.png"),
                  "Training loss per step and validation loss per domain at each evaluation (validation points "
                  "of different domains are offset slightly along the step axis so none hides another).")


def plot_eval_curves(curves: dict[str, Any], out: Path) -> Figure | None:
    """Each task's metrics against the training step of the checkpoint evaluated (``logos eval``)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    steps = curves.get("steps", [])
    if len(steps) < 2:
        return None
    by_task: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for entry in steps:
        for key, value in entry["metrics"].items():
            task, _, metric = key.partition(".")
            if value is not None and not (task == "perplexity" and metric != "all"):
                by_task.setdefault(task, {}).setdefault(metric, []).append((entry["step"], value))
    if not by_task:
        return None
    plt = _pyplot()
    columns = min(3, len(by_task))
    rows = -(-len(by_task) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(MAX_WIDTH_IN, 2.6 * rows + 0.3), squeeze=False)
    checkpoint_steps = sorted({e["step"] for e in steps})
    span = (checkpoint_steps[-1] - checkpoint_steps[0]) or 1
    for ax, (task, metrics) in zip(axes.flat, sorted(by_task.items()), strict=False):
        _dodged(ax, metrics, span * 2)
        if task == "perplexity":
            ax.set(yscale="log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        elif all(0 <= v <= 1 for points in metrics.values() for _, v in points):
            ax.set(ylim=(-0.05, 1.05))  # fractions; the SA score (1..10) keeps its own range
        ax.xaxis.set_major_locator(FixedLocator(checkpoint_steps))
        ax.set(title=task, xlabel="checkpoint step")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(by_task):]:
        ax.axis("off")
    fig.tight_layout()
    return Figure(_save(fig, out / "eval_curves.png"),
                  "Task metrics of each evaluated checkpoint (logos eval); metrics of one task that coincide are "
                  "offset slightly along the step axis.")
