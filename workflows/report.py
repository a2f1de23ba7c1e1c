"""``logos report DATASET[@VERSION] --out DIR``: an HTML page with PNG plots of a dataset version.

Everything is read from the dataset store (the version's manifest, its lineage, its Delta tables) and,
when a workflow run trained on it, from that run's metrics: the data mix by domain in tokens (as
LOGOS's data-volume chart), token-length histograms per domain, rejects by reason, dedup and split
statistics, the training loss curves, and the task metrics of ``logos eval`` when a run evaluated.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.versions import DatasetStore, Manifest
from workflows.runs import runs_using


@dataclass
class Lineage:
    """The version and every version it was made from, newest first."""

    manifests: list[Manifest]

    @classmethod
    def of(cls, store: DatasetStore, ref: str) -> Lineage:
        seen, queue = [], [store.manifest(ref)]
        while queue:
            manifest = queue.pop(0)
            if manifest.ref not in {m.ref for m in seen}:
                seen.append(manifest)
                queue += [store.find(i.name, i.version) for i in manifest.inputs if i.name and i.version]
                queue = [m for m in queue if m is not None]
        return cls(seen)

    def first_with_table(self, table: str) -> Manifest | None:
        return next((m for m in self.manifests if table in m.tables), None)

    def mixture(self) -> dict[str, Any] | None:
        return next((m.outputs["mixture"] for m in self.manifests if "mixture" in m.outputs), None)


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_mix(records: pl.DataFrame, mixture: dict[str, Any] | None, out: Path) -> Path:
    plt = _figure()
    tokens = records.group_by("domain").agg(pl.col("n_tokens").sum()).sort("n_tokens")
    fig, axes = plt.subplots(1, 2 if mixture else 1, figsize=(11 if mixture else 6, 3.5), squeeze=False)
    axes[0][0].barh(tokens["domain"], tokens["n_tokens"], color="#3b6ea5")
    axes[0][0].set(xlabel="tokens", title="data volume by domain (records table)")
    if mixture:
        train = [s for s in mixture["shares"] if s["split"] == "train"]
        axes[0][1].barh([s["domain"] for s in train], [s["weight"] for s in train], color="#c46b2d")
        axes[0][1].set(xlabel="sampling weight", title="training mixture")
    fig.tight_layout()
    return _save(fig, out / "mix_by_domain.png")


def plot_lengths(records: pl.DataFrame, out: Path) -> Path:
    plt = _figure()
    domains = sorted(records["domain"].unique())
    fig, axes = plt.subplots(1, len(domains), figsize=(3.2 * len(domains), 3), squeeze=False)
    for ax, domain in zip(axes[0], domains, strict=True):
        ax.hist(records.filter(pl.col("domain") == domain)["n_tokens"].to_numpy(), bins=30, color="#3b6ea5")
        ax.set(title=domain, xlabel="tokens per record")
    fig.tight_layout()
    return _save(fig, out / "token_lengths.png")


def plot_counts(counts: dict[str, int], title: str, out: Path, name: str) -> Path | None:
    if not counts:
        return None
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(counts) + 1.2))
    labels = sorted(counts, key=counts.get)
    ax.barh(labels, [counts[k] for k in labels], color="#8a4f7d")
    ax.set(title=title, xlabel="records")
    fig.tight_layout()
    return _save(fig, out / name)


def plot_splits(records: pl.DataFrame, out: Path) -> Path | None:
    if "split" not in records.columns:
        return None
    plt = _figure()
    table = records.group_by("domain", "split").agg(pl.len()).pivot("split", index="domain", values="len").fill_null(0)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    left = None
    for split in [s for s in ("train", "valid", "test") if s in table.columns]:
        ax.barh(table["domain"], table[split], left=left, label=split)
        left = table[split] if left is None else left + table[split]
    ax.set(title="records per split", xlabel="records")
    ax.legend()
    fig.tight_layout()
    return _save(fig, out / "splits.png")


def plot_loss(metrics_file: Path, out: Path) -> Path | None:
    from training.metrics import read_metrics  # one record per step, also across resumes

    train = [(r["step"], r["loss"]) for r in read_metrics(metrics_file, "train")]
    if not train:
        return None
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(*zip(*train, strict=True), label="train")
    valid: dict[str, list[tuple[int, float]]] = {}
    for r in read_metrics(metrics_file, "valid"):
        for domain, loss in (r.get("valid_loss") or {}).items():
            valid.setdefault(domain, []).append((r["step"], loss))
    for domain, points in sorted(valid.items()):
        ax.plot(*zip(*points, strict=True), marker="o", linestyle="--", label=f"valid {domain}")
    ax.set(title="training loss", xlabel="step", ylabel="loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out / "loss.png")


def plot_eval_curves(curves: dict[str, Any], out: Path) -> Path | None:
    """Each task's metrics against the training step of the checkpoint evaluated (``logos eval``)."""
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
    plt = _figure()
    columns = min(4, len(by_task))
    rows = -(-len(by_task) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.0 * rows), squeeze=False)
    for ax, (task, metrics) in zip(axes.flat, sorted(by_task.items()), strict=False):
        for metric, points in sorted(metrics.items()):
            ax.plot(*zip(*points, strict=True), marker="o", label=metric)
        if task == "perplexity":
            ax.set(yscale="log")
        elif all(0 <= v <= 1 for points in metrics.values() for _, v in points):
            ax.set(ylim=(-0.05, 1.05))  # fractions; the SA score (1..10) keeps its own range
        ax.set(title=task, xlabel="step")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(by_task):]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, out / "eval_curves.png")


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    _figure().close(fig)
    return path


def write_report(
    store: DatasetStore, ref: str, out: str | Path, *, metrics_file: Path | None = None, runs_root: Path | None = None,
    eval_results: Path | None = None,
) -> Path:
    """Write ``out/index.html`` and its PNGs. Training curves come from ``metrics_file`` or, failing
    that, from the newest workflow run under ``runs_root`` that trained on this dataset's lineage."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lineage = Lineage.of(store, ref)
    head = lineage.manifests[0]
    columns = store.scan(head).collect_schema().names()
    records = store.scan(head).select([c for c in ("domain", "n_tokens", "split") if c in columns]).collect()
    rejects_from = lineage.first_with_table("rejects")
    rejects = store.read(rejects_from, "rejects") if rejects_from else None
    duplicates_from = lineage.first_with_table("duplicates")
    duplicates = store.read(duplicates_from, "duplicates") if duplicates_from else None
    images = [plot_mix(records, lineage.mixture(), out), plot_lengths(records, out), plot_splits(records, out)]
    if rejects is not None and rejects.height:
        by_reason = dict(rejects.group_by("reason_code").len().iter_rows())
        images.append(plot_counts(by_reason, "rejects by reason", out, "rejects.png"))
    if duplicates is not None and duplicates.height:
        by_kind = {f"{d} {r}": n for d, r, n in duplicates.group_by("domain", "reason").len().iter_rows()}
        images.append(plot_counts(by_kind, "duplicates removed (domain, kind)", out, "dedup.png"))
    runs = runs_using([m.ref for m in lineage.manifests], runs_root)
    candidates = [metrics_file] if metrics_file else [r.metrics_file() for r in runs]
    metrics = next((m for m in candidates if m is not None and m.is_file()), None)
    if metrics is not None:
        images.append(plot_loss(metrics, out))
    evaluation = json.loads(eval_results.read_text()) if eval_results is not None else None
    curves = eval_results.with_name("curves.json") if eval_results is not None else None
    if curves is not None and curves.is_file():
        images.append(plot_eval_curves(json.loads(curves.read_text()), out))
    page = out / "index.html"
    page.write_text(render_html(lineage, [i for i in images if i is not None], runs, evaluation))
    return page


def render_metrics(results: dict[str, Any] | None) -> str:
    """The task metrics of a ``logos eval`` results JSON as a table (value and the count behind it)."""
    if results is None:
        return ""
    from training.evaluation.run import metric_rows

    rows = "".join(
        f"<tr><td>{html.escape(task)}</td><td>{html.escape(name)}</td>"
        f"<td>{'—' if value is None else f'{value:.4g}'}</td><td>{count}</td></tr>"
        for task, name, value, count in metric_rows(results)
    )
    skipped = "".join(f"<li>{html.escape(task)}: {html.escape(s['what'])}: {html.escape(s['reason'])}</li>"
                      for task, entry in results.get("tasks", {}).items() for s in entry.get("skipped", []))
    generation = html.escape(json.dumps(results.get("generation", {})))
    return (f"<h2>Task metrics (logos eval)</h2><p>model {html.escape(str(results['model']['path']))}, "
            f"dataset {html.escape(results['dataset']['ref'])}, generation {generation}</p>"
            f"<table><tr><th>task</th><th>metric</th><th>value</th><th>count</th></tr>{rows}</table>"
            + (f"<p>skipped:</p><ul>{skipped}</ul>" if skipped else ""))


def render_html(lineage: Lineage, images: list[Path], runs: list, evaluation: dict[str, Any] | None = None) -> str:
    head = lineage.manifests[0]
    rows = "".join(
        f"<tr><td>{html.escape(m.ref)}</td><td>{m.stage}</td><td>{m.created}</td>"
        f"<td>{html.escape(', '.join(i.label() for i in m.inputs))}</td></tr>"
        for m in lineage.manifests
    )
    counts = html.escape(json.dumps(head.counts, indent=1))
    run_list = "".join(f"<li>{html.escape(r.run_id)}: {html.escape(r.workflow)}</li>" for r in runs) or "<li>none</li>"
    pictures = "".join(f'<figure><img src="{p.name}" alt="{p.stem}"><figcaption>{p.stem}</figcaption></figure>'
                       for p in images)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(head.ref)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}td,th{{padding:2px 8px;text-align:left}}
figure{{display:inline-block;margin:8px}}pre{{background:#f4f4f4;padding:8px}}</style></head><body>
<h1>Dataset {html.escape(head.ref)}</h1>
<p>stage <b>{head.stage}</b>, code {html.escape(head.code_version)}, tokenizer {html.escape(head.tokenizer_hash)}</p>
<h2>Lineage</h2><table><tr><th>version</th><th>stage</th><th>created</th><th>inputs</th></tr>{rows}</table>
<h2>Counts</h2><pre>{counts}</pre>
<h2>Workflow runs that used it</h2><ul>{run_list}</ul>
{render_metrics(evaluation)}
<h2>Plots</h2>{pictures}
</body></html>"""
