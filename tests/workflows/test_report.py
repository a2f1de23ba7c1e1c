"""The report of the demo run: counts against the stages' own manifest counts, run lineage against the run
records, the training summary against the run's config and metrics, and the page in a real browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pipeline.versions import DatasetStore
from workflows.report import write_report
from workflows.runner import run_workflow


class _Tables(HTMLParser):
    """The text of every cell of every ``<table id=...>``, as {id: [[cell, ...], ...]}."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables_of(page: Path) -> dict[str, list[dict[str, str]]]:
    parser = _Tables()
    parser.feed(page.read_text())
    return {name.removesuffix("-table"): [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
            for name, rows in parser.tables.items()}


def number(text: str) -> int:
    return int(text.replace(",", ""))


def test_counts_tables_match_the_stages_manifest_counts(demo):
    home, outcome = demo
    manifest = DatasetStore(home / "datasets").manifest(outcome.results["export"].ref)
    counts = {row["domain"]: row for row in tables_of(Path(outcome.results["report"].path) / "index.html")["counts"]}
    for what in ("records", "tokens"):  # the stage counted these when it wrote the version
        for split, by_domain in manifest.counts[what].items():
            for domain, expected in by_domain.items():
                assert number(counts[domain][f"{split} {what}"]) == expected, (split, domain, what)
        assert number(counts["total"][what]) == sum(sum(d.values()) for d in manifest.counts[what].values())
    removed = {row["domain"]: row for row in tables_of(Path(outcome.results["report"].path) / "index.html")["removed"]}
    assert number(removed["total"]["exact duplicates"]) == manifest.counts["duplicates"]["exact"]
    assert number(removed["total"]["near duplicates"]) == manifest.counts["duplicates"]["near"]


def test_training_summary_from_the_run_config_and_metrics(demo):
    _, outcome = demo
    trained = outcome.results["trained"]
    tables = tables_of(Path(outcome.results["report"].path) / "index.html")
    config = json.loads((Path(trained.run_dir) / "config.json").read_text())
    summary = tables["training"][0]
    assert number(summary["steps"]) == trained.steps == config["train_steps"]
    tokens = trained.steps * config["data"]["global_batch_size"] * config["data"]["seq_length"]
    assert number(summary["tokens seen"]) == tokens
    assert float(summary["final train loss"]) == pytest.approx(trained.final_loss, abs=5e-4)
    assert number(summary["tokens/s"]) > 0
    valid = {row["domain"]: float(row["loss"]) for row in tables["validation"]}
    assert valid == pytest.approx(trained.valid_loss, abs=5e-4)
    metrics = {(row["task"], row["metric"]) for row in tables["metrics"]}  # the eval ran: its table is there
    assert ("perplexity", "all") in metrics


def test_lineage_names_the_run_that_made_a_version_and_only_the_runs_that_used_it(demo, tmp_path):
    home, first = demo
    store = DatasetStore(home / "datasets")
    made_here = tables_of(Path(first.results["report"].path) / "index.html")["runs"]
    assert (first.record.run_id, "made it") in [(r["run"], r["this version"]) for r in made_here]

    # Another mixture of the same split: a new exported version, the split version found made.
    other = run_workflow("demo", [f"home={home}", "targets=[export]", "mix.temperature=3.0"])
    assert other.results["split"].ref == first.results["split"].ref
    assert other.results["export"].ref != first.results["export"].ref

    def report(ref: str) -> dict[str, list[dict[str, str]]]:  # as `logos report` writes it
        return tables_of(write_report(store, ref, tmp_path / ref.replace("@", "_"), runs_root=home / "runs"))

    def runs(tables: dict[str, list[dict[str, str]]]) -> dict[str, str]:
        return {r["run"]: r["this version"] for r in tables["runs"]}

    first_id, other_id = first.record.run_id, other.record.run_id
    trained_on = report(first.results["export"].ref)
    assert runs(trained_on).get(first_id) == "made it"
    assert other_id not in runs(trained_on)  # it shares an ancestor, not this version
    assert {"training", "validation", "metrics"} <= set(trained_on)  # found through the run that trained on it
    only_exported = report(other.results["export"].ref)
    assert runs(only_exported) == {other_id: "made it"} and "training" not in only_exported
    split = runs(report(first.results["split"].ref))
    assert split[first_id] == "made it" and split[other_id] == "reused it (cache hit)"


PROBE = """<script>window.addEventListener("load", () => {
  const probe = document.createElement("pre"); probe.id = "logos-probe";
  probe.textContent = JSON.stringify({scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth, images: [...document.images].map(i => [i.getAttribute("src"), i.naturalWidth])});
  document.body.appendChild(probe);
});</script>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: CI must install it (.ci/run) for the report's browser test")
        pytest.skip("chromium is not installed (Debian package chromium); the report's browser test needs it")
    return found


def render(browser: str, page: Path, width: int, profile: Path) -> dict:
    """Load ``page`` in headless Chromium at ``width`` CSS px and return what the probe measured after load."""
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", f"--window-size={width},900", "--virtual-time-budget=5000", "--dump-dom",
         page.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="logos-probe">(.*?)</pre>', done.stdout)
    assert found, f"no probe output from chromium (exit {done.returncode}): {done.stderr[-1500:]}"
    return json.loads(found.group(1).replace("&quot;", '"'))


def test_report_fits_the_page_in_a_real_browser(demo, tmp_path):
    browser = chromium()
    _, outcome = demo
    report = Path(outcome.results["report"].path)
    copy = shutil.copytree(report, tmp_path / "report")
    page = copy / "index.html"
    page.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    pictures = {p.name for p in report.glob("*.png")}
    assert {"mix_by_domain.png", "token_lengths.png", "rejects.png", "loss.png", "eval_curves.png"} <= pictures
    for width in (1280, 420):  # a desktop window and a phone
        seen = render(browser, page, width, tmp_path / f"profile{width}")
        assert seen["scrollWidth"] <= seen["innerWidth"], f"horizontal overflow at {width} px: {seen}"
        assert {src for src, _ in seen["images"]} == pictures
        assert all(natural > 0 for _, natural in seen["images"]), f"broken image: {seen['images']}"
