"""``logos eval MODEL --dataset NAME@VERSION``, ``logos eval score``, ``logos eval export-prompts``.

``eval`` takes a model path or one of two verbs as its first word; argparse cannot mix a positional
with subcommands, so the first word picks one of three parsers here. Usage errors (unknown task, dataset
without a test split, tokenizer mismatch, missing files) print one line and exit 2, writing nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

VERBS = ("score", "export-prompts")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="task metrics of a model on a dataset version's test split (and scoring of predictions)",
        description="logos eval MODEL --dataset NAME@VERSION [...] | logos eval score ... | "
                    "logos eval export-prompts ...  (each takes --help)",
        add_help=False)
    parser.add_argument("-h", "--help", dest="show_help", action="store_true", help="show the three usages")
    parser.add_argument("target", nargs="?", metavar="MODEL|score|export-prompts")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    parser.set_defaults(func=_dispatch)


def _home_store(home: str) -> Any:
    from pipeline.io import join_uri
    from pipeline.versions import DatasetStore

    return DatasetStore(join_uri(home, "datasets"))  # a local home or a URI


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", default=os.environ.get("LOGOS_HOME", ".logos"), help="the logos home folder")
    parser.add_argument("--json", action="store_true", help="print the results JSON on stdout")


def eval_parser() -> argparse.ArgumentParser:
    from training.evaluation.run import ENGINES, EvalConfig
    from training.evaluation.tasks import TASK_NAMES

    defaults = EvalConfig()
    parser = argparse.ArgumentParser(prog="logos eval", description="generate on the test split and score")
    parser.add_argument("model", help="an HF export directory, or a training run / checkpoint directory "
                                      "(exported on the fly)")
    parser.add_argument("--dataset", required=True, help="NAME@VERSION (or NAME for the latest version)")
    parser.add_argument("--tasks", nargs="+", metavar="TASK", help=f"default: all of {', '.join(TASK_NAMES)}")
    parser.add_argument("--limit", type=int, help="prompts per task (records per domain/task for perplexity)")
    parser.add_argument("--samples", type=int, default=defaults.samples, help="sequences per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    parser.add_argument("--temperature", type=float, default=defaults.temperature, help="0: greedy")
    parser.add_argument("--top-p", type=float, default=defaults.top_p)
    parser.add_argument("--repetition-penalty", type=float, default=defaults.repetition_penalty)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--engine", choices=ENGINES, default=defaults.engine)
    parser.add_argument("--every-checkpoint", action="store_true",
                        help="MODEL is a training run: evaluate each of its checkpoints (metric-vs-step curves)")
    parser.add_argument("--out", help="results folder (default: HOME/eval/<model folder name>)")
    _common(parser)
    return parser


def score_parser() -> argparse.ArgumentParser:
    from training.evaluation.tasks import TASKS

    parser = argparse.ArgumentParser(prog="logos eval score",
                                     description="score a predictions JSONL (logos eval's or LOGOS's scripts')")
    parser.add_argument("--task", required=True, help=f"one of {', '.join(TASKS)}")
    parser.add_argument("--predictions", required=True,
                        help="JSONL with sequence (or text) and groundtruth, or a folder of them (LOGOS: one a prompt)")
    parser.add_argument("--dataset", help="NAME@VERSION whose train split novelty is measured against")
    parser.add_argument("--references", help="input JSONL (export-prompts) giving the groundtruth of lines without one")
    _common(parser)
    return parser


def export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="logos eval export-prompts",
                                     description="write the test split in LOGOS's input JSONL layouts")
    parser.add_argument("--dataset", required=True, help="NAME@VERSION")
    parser.add_argument("--format", choices=("logos",), default="logos")
    parser.add_argument("--out", required=True, help="output folder (one <task>.jsonl per task)")
    parser.add_argument("--tasks", nargs="+", metavar="TASK")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--home", default=os.environ.get("LOGOS_HOME", ".logos"), help="the logos home folder")
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    if args.target is None:
        print("usage: logos eval MODEL --dataset NAME@VERSION [--tasks ...] [--limit N] [--samples K] "
              "[--out DIR] [--json]\n       logos eval score --task T --predictions FILE [--json]\n"
              "       logos eval export-prompts --dataset NAME@VERSION --format logos --out DIR\n"
              "(each takes --help)", file=sys.stdout if args.show_help else sys.stderr)
        return 0 if args.show_help else 2
    if args.target == "score":
        return _score(score_parser().parse_args(args.rest))
    if args.target == "export-prompts":
        return _export(export_parser().parse_args(args.rest))
    return _evaluate(eval_parser().parse_args([args.target, *args.rest]))


def _fail(exc: BaseException) -> int:
    print(f"logos eval: {exc}", file=sys.stderr)
    return 2


def _evaluate(args: argparse.Namespace) -> int:
    from training.evaluation.run import EvalConfig, evaluate, metric_rows
    from training.evaluation.tasks import EvalError

    try:
        config = EvalConfig(tasks=args.tasks, limit=args.limit, samples=args.samples,
                            max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                            repetition_penalty=args.repetition_penalty, batch_size=args.batch_size, seed=args.seed,
                            engine=args.engine, every_checkpoint=args.every_checkpoint)
    except ValueError as exc:  # EvalError included: an unknown task name
        return _fail(exc)
    out = Path(args.out) if args.out else Path(args.home) / "eval" / Path(args.model).resolve().name
    try:
        if config.every_checkpoint:
            from training.evaluation.run import evaluate_checkpoints

            curves = evaluate_checkpoints(args.model, args.dataset, config, out, _home_store(args.home))
        else:
            results = evaluate(args.model, args.dataset, config, out, _home_store(args.home))
    except EvalError as exc:
        return _fail(exc)
    if config.every_checkpoint:
        if args.json:
            print(json.dumps(curves, indent=1))
        else:
            for entry in curves["steps"]:
                _print_table([(f"step {entry['step']}", name, value, None) for name, value in entry["metrics"].items()])
            print(f"curves {out / 'curves.json'}")
        return 0
    if args.json:
        print(json.dumps(results, indent=1, default=str))
    else:
        _print_table(metric_rows(results))
        print(f"results {out / 'results.json'}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from training.evaluation.predictions import score_file
    from training.evaluation.tasks import EvalError

    try:
        store = _home_store(args.home) if args.dataset else None
        results = score_file(args.task, args.predictions, store, args.dataset, args.references)
    except EvalError as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        _print_table([(args.task, name, m["value"], m["count"]) for name, m in results["metrics"].items()])
        print(", ".join(f"{k} {v}" for k, v in results["counts"].items()))
    return 0


def _export(args: argparse.Namespace) -> int:
    from training.evaluation.references import export_prompts
    from training.evaluation.tasks import EvalError

    try:
        summary = export_prompts(_home_store(args.home), args.dataset, args.out, args.tasks, args.limit)
    except EvalError as exc:
        return _fail(exc)
    print(json.dumps(summary, indent=1))
    return 0


def _print_table(rows: list[tuple[str, str, Any, int | None]]) -> None:
    width = max((len(t) + len(m) for t, m, _, _ in rows), default=10) + 2
    for task, name, value, count in rows:
        shown = "—" if value is None else f"{value:.4g}"
        print(f"{task}.{name}".ljust(width), shown.rjust(10), "" if count is None else f"(n={count})")
