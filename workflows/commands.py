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

            print(f"wrote {draw_workflow(args.workflow, args.overrides, args.draw)}")
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
    width = max(map(len, outcome.plan), default=0)
    print("stage".ljust(width), "plan" if args.dry_run else "plan -> result")
    for stage, step in outcome.plan.items():
        action = {"run": "would run", "done": "done (cached output)", "skip": "not configured"}[step]
        if not args.dry_run and step != "skip":
            action = f"{action} -> {'executed' if stage in outcome.executed else 'cache hit'}"
        print(stage.ljust(width), action)
    if outcome.record is not None:
        print(f"run {outcome.record.run_id}: {outcome.record.status}; record {outcome.record.path}")
        _print_outputs(outcome.results)
    return 0


def _print_outputs(results: dict) -> None:
    for stage in ("exported", "trained", "hf_model", "evaluated", "report"):
        value = results.get(stage)
        if value is None:
            continue
        if stage == "exported":
            print(f"dataset  {value.ref}  (logos datasets show {value.ref})")
        elif stage == "trained":
            print(f"trained  {value.steps} steps, final loss {value.final_loss:.3f}, checkpoint {value.checkpoint}")
        else:
            print(f"{stage:8s} {Path(value.path) / value.main_file}")


def _report(args: argparse.Namespace) -> int:
    from pipeline.versions import DatasetStore
    from workflows.report import write_report

    home = Path(args.home)
    page = write_report(DatasetStore(home / "datasets"), args.dataset, args.out, runs_root=home / "runs")
    print(json.dumps({"report": str(page)}))
    return 0
