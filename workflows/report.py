"""``logos report DATASET[@VERSION] --out DIR``: an HTML page about a dataset version, for the scientist
who will train on it.

Everything is read from the dataset store (the version's manifest, its lineage, its Delta tables), the
workflow run records, and, when a run trained or evaluated on exactly this version, that run's metrics:
- counts as tables: records and tokens by split and domain, what was removed (duplicates, exclusions)
  by domain, rejected input items by source and reason, and the ingest summary of each source;
- run lineage: the versions it was made from, the run that made each, and the workflow runs that made
  or reused this very version (not runs that only share an ancestor: those made other data);
- a training summary (final losses per domain, tokens seen, throughput) and the ``logos eval`` metrics;
- figures that fit the page (``workflows.report_figures``), each under a caption saying what it shows.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.versions import DatasetStore, Manifest
from workflows import report_figures as figures
from workflows.runs import RunRecord, now, runs_using


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


@dataclass
class RunUse:
    """A workflow run that made or reused the reported version, and what else it did."""

    run_id: str
    workflow: str
    status: str
    made_it: bool
    executed: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, record: RunRecord, made_by: str | None) -> RunUse:
        executed = [name for name, stage in record.stages.items() if stage.get("executed")]
        return cls(record.run_id, record.workflow, record.status, record.run_id == made_by, executed)


def run_uses(head: Manifest, runs_root: Path | None, this_run: dict[str, Any] | None) -> list[RunUse]:
    """Runs that made or reused ``head``, newest first. ``this_run`` is the run writing the report from
    its DAG: its record lists its stages only when it ends, so it is named here by its caller."""
    made_by = head.run.get("run_id")
    uses = [RunUse.of(r, made_by) for r in runs_using(head.ref, runs_root)]
    if this_run is not None and this_run["run_id"] not in {u.run_id for u in uses}:
        uses.insert(0, RunUse(this_run["run_id"], this_run["workflow"], "running (wrote this report)",
                              this_run["run_id"] == made_by, list(this_run.get("executed", []))))
    return uses


@dataclass
class TrainingSummary:
    """What a scientist asks first about a training run: how far, how well, how fast."""

    run_dir: Path
    steps: int
    final_loss: float | None
    valid_loss: dict[str, float]
    valid_step: int | None
    tokens_seen: int | None
    tokens_per_s: float | None
    train_curve: list[tuple[int, float]]
    valid_curves: dict[str, list[tuple[int, float]]]

    @classmethod
    def read(cls, metrics_file: Path) -> TrainingSummary | None:
        from training.metrics import read_metrics  # one record per step, also across resumes

        train = read_metrics(metrics_file, "train")
        if not train:
            return None
        valid = [r for r in read_metrics(metrics_file, "valid") if r.get("valid_loss")]
        curves: dict[str, list[tuple[int, float]]] = {}
        for record in valid:
            for domain, loss in record["valid_loss"].items():
                if loss is not None:
                    curves.setdefault(domain, []).append((record["step"], loss))
        config_file = metrics_file.parent / "config.json"
        seq_length = json.loads(config_file.read_text())["data"]["seq_length"] if config_file.is_file() else None
        consumed = train[-1].get("consumed_samples")
        # Throughput over the timed training steps after the first interval (graph capture, allocator
        # warm-up), weighted by time; checkpoint and evaluation time are not in step_time_s.
        timed = [r for r in train[1:] if r.get("tokens_per_s") and r.get("step_time_s")] or train[:1]
        seconds = sum(r["step_time_s"] * r.get("interval_steps", 1) for r in timed if r.get("step_time_s"))
        tokens = sum(r["tokens_per_s"] * r["step_time_s"] * r.get("interval_steps", 1)
                     for r in timed if r.get("tokens_per_s") and r.get("step_time_s"))
        return cls(
            run_dir=metrics_file.parent, steps=train[-1]["step"], final_loss=train[-1].get("loss"),
            valid_loss=dict(valid[-1]["valid_loss"]) if valid else {}, valid_step=valid[-1]["step"] if valid else None,
            tokens_seen=consumed * seq_length if consumed is not None and seq_length else None,
            tokens_per_s=tokens / seconds if seconds > 0 else None,
            train_curve=[(r["step"], r["loss"]) for r in train if r.get("loss") is not None], valid_curves=curves,
        )


def write_report(
    store: DatasetStore, ref: str, out: str | Path, *, metrics_file: Path | None = None, runs_root: Path | None = None,
    eval_results: Path | None = None, this_run: dict[str, Any] | None = None,
) -> Path:
    """Write ``out/index.html`` and its PNGs. The training summary and the task metrics come from
    ``metrics_file`` and ``eval_results`` or, failing those, from the newest workflow run under ``runs_root``
    that exported exactly this version and trained (evaluated) on it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lineage = Lineage.of(store, ref)
    head = lineage.manifests[0]
    columns = store.scan(head).collect_schema().names()
    records = store.scan(head).select([c for c in ("domain", "n_tokens", "split") if c in columns]).collect()
    tables = {name: store.read(found, name) for name in ("rejects", "duplicates", "excluded")
              if (found := lineage.first_with_table(name)) is not None}
    uses = run_uses(head, runs_root, this_run)
    if metrics_file is None or eval_results is None:  # `logos report`: from the newest run that exported it
        exported = [r for r in runs_using(head.ref, runs_root) if "export" in r.stages_with(head.ref)]
        metrics_file = metrics_file or next(
            (m for r in exported if (m := r.metrics_file()) is not None and m.is_file()), None)
        eval_results = eval_results or next(
            (e for r in exported if (e := r.eval_results()) is not None and e.is_file()), None)
    training = TrainingSummary.read(metrics_file) if metrics_file is not None and metrics_file.is_file() else None
    evaluation = json.loads(eval_results.read_text()) if eval_results is not None else None
    curves = eval_results.with_name("curves.json") if eval_results is not None else None

    mixture = lineage.mixture()
    data_figures = [figures.plot_volume(records, out), mixture and figures.plot_mixture(mixture, out),
                    figures.plot_splits(records, out), figures.plot_lengths(records, out)]
    if "rejects" in tables:
        data_figures.append(figures.plot_counts(
            dict(tables["rejects"].group_by("reason_code").len().iter_rows()), "rejects by reason code",
            "rejects", out, "rejects.png",
            "Rejects at ingest (a file, an entry or a chain that could not become a record), by reason code."))
    if "duplicates" in tables:
        data_figures.append(figures.plot_counts(
            {f"{d} ({r})": n for d, r, n in tables["duplicates"].group_by("domain", "reason").len().iter_rows()},
            "duplicates removed", "records", out, "dedup.png",
            "Records removed as duplicates, by domain and kind (exact: same key; near: MinHash similarity)."))
    numbered = [f for f in data_figures if f]
    loss = figures.plot_loss(training.train_curve, training.valid_curves, out) if training else None
    eval_curves = (figures.plot_eval_curves(json.loads(curves.read_text()), out)
                   if curves is not None and curves.is_file() else None)
    loss_figure = render_figures([loss] if loss else [], len(numbered) + 1)
    curves_figure = render_figures([eval_curves] if eval_curves else [], len(numbered) + 1 + bool(loss))
    page = out / "index.html"
    page.write_text(render_html(lineage, records, tables, uses, render_figures(numbered, 1),
                                render_training(training, loss_figure), render_metrics(evaluation, curves_figure)))
    return page


def _int(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _table(name: str, header: list[str], rows: list[list[Any]], numeric: set[int] | None = None,
           total: bool = False) -> str:
    """An HTML table in a scrolling box (a long path must not widen the page); numbers right-aligned."""
    def cell(i: int, value: Any, tag: str) -> str:
        text = _int(value) if isinstance(value, int) else html.escape(str(value))
        return f'<{tag} class="num">{text}</{tag}>' if i in right else f"<{tag}>{text}</{tag}>"

    right = set(range(1, len(header))) if numeric is None else numeric

    head = "".join(cell(i, h, "th") for i, h in enumerate(header))
    body = "".join(f'<tr{" class=total" if total and n == len(rows) - 1 else ""}>'
                   + "".join(cell(i, v, "td") for i, v in enumerate(row)) + "</tr>" for n, row in enumerate(rows))
    return f'<div class="scroll"><table id="{name}-table"><tr>{head}</tr>{body}</table></div>'


def counts_by_split(records: pl.DataFrame) -> str:
    """Records and tokens for each domain (rows) and split (column pairs), with totals."""
    frame = records if "split" in records.columns else records.with_columns(split=pl.lit("all"))
    grouped = frame.group_by("domain", "split").agg(pl.len().alias("records"), pl.col("n_tokens").sum())
    cells = {(d, s): (n, t) for d, s, n, t in grouped.iter_rows()}
    splits = [s for s in (*figures.SPLIT_ORDER, "all") if any(k[1] == s for k in cells)]
    splits += sorted({s for _, s in cells} - set(splits))
    domains = sorted({d for d, _ in cells})
    header = ["domain"] + [f"{s} {what}" for s in splits for what in ("records", "tokens")] + ["records", "tokens"]
    rows = []
    for domain in [*domains, "total"]:
        keys = [(domain, s) for s in splits] if domain != "total" else None
        per = [cells.get(k, (0, 0)) for k in keys] if keys else [
            tuple(map(sum, zip(*[cells.get((d, s), (0, 0)) for d in domains], strict=True))) for s in splits]
        rows.append([domain, *[int(v) for pair in per for v in pair], sum(p[0] for p in per), sum(p[1] for p in per)])
    return _table("counts", header, rows, total=True)


def removed_by_domain(records: pl.DataFrame, tables: dict[str, pl.DataFrame], configured: list[str]) -> str:
    """Per domain: records kept, duplicates removed (each kind run, ``configured``, also when it found
    none) and records excluded at split."""
    kept = dict(records.group_by("domain").len().iter_rows())
    duplicates = tables.get("duplicates")
    found = duplicates["reason"].unique().to_list() if duplicates is not None and duplicates.height else []
    kinds = sorted(set(found) | set(configured))
    removed = {(d, r): n for d, r, n in duplicates.group_by("domain", "reason").len().iter_rows()} if kinds else {}
    excluded = tables.get("excluded")
    excluded_by = dict(excluded.group_by("domain").len().iter_rows()) if excluded is not None else {}
    domains = sorted(set(kept) | {d for d, _ in removed} | set(excluded_by))
    header = ["domain", "kept records", *[f"{k} duplicates" for k in kinds],
              *(["excluded at split"] if excluded is not None else [])]
    rows = [[d, kept.get(d, 0), *[removed.get((d, k), 0) for k in kinds],
             *([excluded_by.get(d, 0)] if excluded is not None else [])] for d in domains]
    rows.append(["total", *[sum(r[i] for r in rows) for i in range(1, len(header))]])
    return _table("removed", header, rows, total=True)


def rejects_by_reason(rejects: pl.DataFrame | None) -> str:
    if rejects is None or rejects.height == 0:
        return "<p>Nothing was rejected.</p>"
    grouped = rejects.group_by("source", "stage", "reason_code").len().sort("source", "len", descending=[False, True])
    examples = dict(rejects.group_by("source", "reason_code").agg(pl.col("reason").first()).select(
        pl.concat_str("source", "reason_code", separator="/"), "reason").iter_rows())
    rows = [[s, st, code, n, examples[f"{s}/{code}"]] for s, st, code, n in grouped.iter_rows()]
    return _table("rejects", ["source", "stage", "reason code", "rejects", "example"], rows, numeric={3})


def ingest_by_source(lineage: Lineage) -> str:
    """Items read, written and rejected per source, from the ingest summaries the oldest version was built
    from (read where they are reachable from here; a remote ingest folder is left out, and said so)."""
    rows, unreachable = [], []
    for manifest in lineage.manifests:
        for item in manifest.inputs:
            summary = Path(item.uri) / "summary.json" if item.uri else None
            if summary is None:
                continue
            if not summary.is_file():
                unreachable.append(item.uri)
                continue
            data = json.loads(summary.read_text())
            items, source = data.get("items", {}), (data.get("config") or {}).get("source", Path(item.uri).parent.name)
            rows.append([source, items.get("read"), items.get("written"), items.get("rejected"),
                         data.get("records"), data.get("tokens")])
    if not rows and not unreachable:
        return ""
    note = f"<p>Not reachable from here: {html.escape(', '.join(unreachable))}</p>" if unreachable else ""
    table = _table("ingest", ["source", "items read", "items written", "items rejected", "records", "tokens"],
                   sorted(rows)) if rows else ""
    return f"<h3>Ingest by source</h3>{table}{note}"


def render_lineage(lineage: Lineage, uses: list[RunUse]) -> str:
    rows = [[m.ref, m.stage, m.created[:19].replace("T", " "), m.run.get("run_id", "— (not a workflow run)"),
             ", ".join(i.label() if i.name else f"{Path(i.uri or '').name} (ingest)" for i in m.inputs)]
            for m in lineage.manifests]
    versions = _table("versions", ["version", "stage", "created (UTC)", "made by run", "inputs"], rows, numeric=set())
    head = lineage.manifests[0]
    made_by = head.run.get("run_id")
    made = (f"<p>Made by workflow run <b>{html.escape(made_by)}</b> ({html.escape(str(head.run.get('workflow')))},"
            f" stage {html.escape(str(head.run.get('stage', head.stage)))}).</p>" if made_by
            else "<p>Made by a command outside a workflow run (no run id).</p>")
    run_rows = [[u.run_id, u.workflow, u.status, "made it" if u.made_it else "reused it (cache hit)",
                 ", ".join(u.executed) or "none (all cache hits)"] for u in uses]
    used = (_table("runs", ["run", "workflow", "status", "this version", "stages executed"], run_rows, numeric=set())
            if run_rows else "<p>No workflow run recorded under this home made or reused it.</p>")
    return (f"<h2 id=lineage>Lineage</h2>{made}{versions}<h3>Workflow runs that made or reused this version</h3>{used}"
            f"<p class=note>As of {now()} UTC.</p>")


def render_training(training: TrainingSummary | None, figure: str) -> str:
    if training is None:
        return ""
    throughput = "—" if training.tokens_per_s is None else f"{training.tokens_per_s:,.0f}"
    summary = _table("training", ["run", "steps", "tokens seen", "tokens/s", "final train loss"], [[
        str(training.run_dir), training.steps, training.tokens_seen, throughput,
        "—" if training.final_loss is None else f"{training.final_loss:.3f}"]])
    valid = ""
    if training.valid_loss:
        valid = (f"<h3>Validation loss per domain at step {training.valid_step}</h3>" + _table(
            "validation", ["domain", "loss", "perplexity"],
            [[d, f"{v:.3f}", f"{math.exp(v):,.1f}"] for d, v in sorted(training.valid_loss.items())]))
    return (f"<h2 id=training>Training</h2><p>tokens seen: consumed samples × sequence length; tokens/s: over "
            f"the timed training steps after the first logging interval (checkpoint and validation time excluded).</p>"
            f"{summary}{valid}{figure}")


def render_metrics(results: dict[str, Any] | None, figure: str = "") -> str:
    """The task metrics of a ``logos eval`` results JSON as a table (value and the count behind it)."""
    if results is None:
        return ""
    from training.evaluation.run import metric_rows

    rows = [[task, name, "—" if value is None else f"{value:.4g}", count if count is not None else None]
            for task, name, value, count in metric_rows(results)]
    skipped = "".join(f"<li>{html.escape(task)}: {html.escape(s['what'])}: {html.escape(s['reason'])}</li>"
                      for task, entry in results.get("tasks", {}).items() for s in entry.get("skipped", []))
    generation = ", ".join(f"{k} {v}" for k, v in results.get("generation", {}).items())
    model = html.escape(str(results["model"]["path"]))
    return (f"<h2 id=evaluation>Task metrics (logos eval)</h2><p>model <code>{model}</code>, "
            f"dataset {html.escape(results['dataset']['ref'])}; generation: {html.escape(generation)}</p>"
            + _table("metrics", ["task", "metric", "value", "count"], rows, numeric={2, 3})
            + (f"<p>skipped:</p><ul>{skipped}</ul>" if skipped else "") + figure)


def render_figures(found: list[figures.Figure], first_number: int) -> str:
    return "".join(
        f'<figure><img src="{html.escape(f.path.name)}" alt="{html.escape(f.caption)}">'
        f"<figcaption><b>Figure {first_number + i}.</b> {html.escape(f.caption)}</figcaption></figure>"
        for i, f in enumerate(found))


STYLE = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:1.5em auto;padding:0 1em;line-height:1.4}
h1{font-size:1.5em;overflow-wrap:anywhere}h2{border-bottom:1px solid #ccc;margin-top:1.6em}
.scroll{overflow-x:auto;max-width:100%}table{border-collapse:collapse;font-size:.9em;margin:.4em 0}
td,th{padding:2px 10px;text-align:left;border-bottom:1px solid #eee;vertical-align:top}
th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}tr.total td{font-weight:bold}
figure{margin:1em 0}img{max-width:100%;height:auto;display:block}figcaption{font-size:.9em;color:#333}
code,p{overflow-wrap:anywhere}.note{color:#666;font-size:.85em}"""


def render_html(lineage: Lineage, records: pl.DataFrame, tables: dict[str, pl.DataFrame], uses: list[RunUse],
                data_figures: str, training: str, evaluation: str) -> str:
    head = lineage.manifests[0]
    dedup_kinds = list((head.counts.get("duplicates") or {}).keys())
    return f"""<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(head.ref)}</title>
<style>{STYLE}</style></head><body>
<h1>Dataset {html.escape(head.ref)}</h1>
<p>stage <b>{html.escape(head.stage)}</b>, {records.height:,} records, {int(records['n_tokens'].sum()):,} tokens;
code {html.escape(head.code_version)}, tokenizer {html.escape(head.tokenizer_hash)}</p>
<h2 id=counts>Counts</h2>
<h3>Records and tokens by split and domain</h3>{counts_by_split(records)}
<h3>Kept and removed records by domain</h3>{removed_by_domain(records, tables, dedup_kinds)}
<h3>Rejects by source and reason</h3>{rejects_by_reason(tables.get("rejects"))}
{ingest_by_source(lineage)}
{data_figures}
{render_lineage(lineage, uses)}
{training}
{evaluation}
</body></html>"""
