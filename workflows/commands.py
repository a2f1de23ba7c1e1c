"""``logos run`` and ``logos report``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="run a workflow DAG (ingest -> dedup -> split -> mix -> export -> train)")
    run.add_argument("workflow", help="a bundled workflow (demo, full) or a workflow YAML file")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. --set train.train_steps=10 (repeatable)")
    run.add_argument("--ray-address", help="run on this Ray cluster instead of a local Ray")
    run.add_argument("--dry-run", action="store_true", help="print the DAG and which stages would run")
    run.add_argument("--draw", metavar="PNG", help="draw the DAG to an image and exit")
    run.set_defaults(func=_run)

    report = subparsers.add_parser("report", help="HTML report with plots of a dataset version")
    report.add_argument("dataset", help="NAME or NAME@VERSION")
    report.add_argument("--out", required=True, help="output folder")
    report.add_argument("--home", default=os.environ.get("LOGOS_HOME", ".logos"), help="the logos home folder")
    report.set_defaults(func=_report)


def _run(args: argparse.Namespace) -> int:
    from pipeline.options import ConfigError
    from pipeline.ray_cluster import ClusterError, prepare_join
    from workflows.runner import run_workflow

    try:
        if args.draw:
            from workflows.draw import draw_workflow

            drawing = draw_workflow(args.workflow, args.overrides, args.draw)
            print(f"wrote {drawing.path} ({drawing.engine})")
            return 0
        if args.ray_address and not args.dry_run:  # before a run record is written
            prepare_join(args.ray_address)
        outcome = run_workflow(args.workflow, args.overrides, ray_address=args.ray_address, dry_run=args.dry_run)
    except ConfigError as exc:
        print(f"logos run: config error: {exc}", file=sys.stderr)
        return 2
    except ClusterError as exc:
        print(f"logos run: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        width = max(map(len, outcome.plan), default=0)
        print("stage".ljust(width), "plan")
        actions = {"run": "would run", "done": "done (cached output)", "skip": "not configured"}
        for stage, step in outcome.plan.items():
            print(stage.ljust(width), actions[step])
        return 0
    # Each stage already had its progress line (workflows.progress); the summary names what came out.
    record = outcome.record
    stages = [s for s, step in outcome.plan.items() if step != "skip"]
    cached = len([s for s in stages if s not in outcome.executed])
    print(f"run {record.run_id} {record.status}: {len(stages) - cached} stages ran, {cached} cached; "
          f"record {record.path}")
    for name, path, note in output_lines(outcome.results):
        print(f"  {name:10s} {path}" + (f"  ({note})" if note else ""))
    return 0


def output_lines(results: dict) -> list[tuple[str, str, str]]:
    """(name, path, how to use it) for each output of a run, each path openable as printed: the dataset
    by ``logos datasets show``, the model directory by ``from_pretrained``, the report in a browser."""
    lines = []
    exported = results.get("export")
    if exported is not None:
        lines.append(("dataset", exported.ref, f"logos datasets show {exported.ref}"))
        lines.append(("blend", str(exported.blend_path()), "logos train CONFIG --set data.blend=..."))
    trained = results.get("trained")
    if trained is not None:
        loss = f", final loss {trained.final_loss:.3f}" if trained.final_loss is not None else ""
        lines.append(("checkpoint", str(trained.checkpoint), f"{trained.steps} steps{loss}"))
    hf_model = results.get("hf_model")
    if hf_model is not None:  # the directory: from_pretrained cannot load its config.json path
        lines.append(("hf_model", str(hf_model.path), "AutoModelForCausalLM.from_pretrained(path)"))
    evaluated = results.get("evaluated")
    if evaluated is not None:
        lines.append(("eval", str(Path(evaluated.path) / "results.json"), "every metric with its count"))
    report = results.get("report")
    if report is not None:
        lines.append(("report", str(Path(report.path) / report.main_file), "open in a browser"))
    return lines


def _report(args: argparse.Namespace) -> int:
    from pipeline.io import join_uri
    from pipeline.versions import DatasetStore
    from workflows.report import write_report
    from workflows.workspace import default_local_home

    runs = Path(default_local_home(args.home)) / "runs"  # run records stay local when the home is a URI
    page = write_report(DatasetStore(join_uri(args.home, "datasets")), args.dataset, args.out, runs_root=runs)
    print(json.dumps({"report": str(page)}))
    return 0
