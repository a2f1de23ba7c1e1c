"""``logos dedup | split | mix | export megatron`` and ``logos datasets list | show | diff``.

The stage commands are generated from the stage registry (``pipeline.stages``). Each reads dataset
names (``NAME[@VERSION]``) or shard URIs and writes a new dataset version into the store (``--store``,
default ``$LOGOS_HOME/datasets`` or ``./.logos/datasets``); running it again with the same inputs and
options reuses the registered version.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import typing
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    from pipeline.stages import REGISTRY

    for stage in REGISTRY.values():
        _stage_parser(subparsers, stage)

    datasets = subparsers.add_parser("datasets", help="list, show and compare dataset versions")
    actions = datasets.add_subparsers(dest="datasets_command", required=True, metavar="ACTION")
    listing = _with_store(actions.add_parser("list", help="every dataset version"))
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_list)
    show = _with_store(actions.add_parser("show", help="the manifest of NAME[@VERSION]"))
    show.add_argument("ref", metavar="NAME[@VERSION]")
    show.set_defaults(func=_show)
    compare = _with_store(actions.add_parser("diff", help="count changes and added/removed record ids"))
    compare.add_argument("a", metavar="A")
    compare.add_argument("b", metavar="B")
    compare.add_argument("--show", type=int, default=20, help="ids to list per side")
    compare.set_defaults(func=_diff)


def _with_store(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--store", type=Path, help="dataset store (default $LOGOS_HOME/datasets or ./.logos/datasets)")
    return parser


def _stage_parser(subparsers: argparse._SubParsersAction, stage) -> argparse.ArgumentParser:
    """``logos <stage> INPUT... [flags]`` from the stage's declaration: its flags set keys of its config
    dataclass, whose defaults and ``Literal`` choices the help shows (no default is restated here). The config
    class loads only when the help is printed or the stage runs, so ``logos`` starts without the stages'
    heavy imports; a value outside a field's choices is refused by ``from_mapping`` (exit 2, naming both)."""
    *group, verb = stage.command or (stage.name,)
    for word in group:  # `logos export megatron`: the format is a subcommand of the verb (training adds `hf`)
        parent = subparsers.choices.get(word) or subparsers.add_parser(word, help=f"{word} a dataset version")
        found = [a for a in parent._actions if isinstance(a, argparse._SubParsersAction)]
        subparsers = found[0] if found else parent.add_subparsers(dest="format", required=True, metavar="FORMAT")
    parser = _with_store(subparsers.add_parser(verb, help=stage.summary, description=stage.summary))
    many = stage.many_inputs
    parser.add_argument("inputs", nargs="+" if many else 1, metavar="INPUT",
                        help="dataset NAME[@VERSION], or tokenized shards: an ingest output folder, files or globs")
    parser.add_argument("--name", help="name of the dataset this writes a version of (default: the input "
                        "dataset's name when INPUT is NAME[@VERSION])")
    parser.add_argument("--run-id", help="recorded in the manifest's run lineage")
    for flag in stage.flags:
        if flag.switch:
            parser.add_argument(flag.option, action="store_true", help=flag.help)
        elif flag.path is None:
            parser.add_argument(flag.option, metavar=flag.metavar, help=flag.help)
        else:
            metavar = flag.metavar or flag.option.lstrip("-").replace("-", "_").upper()
            parser.add_argument(flag.option, metavar=metavar, help=_LazyHelp(flag.help, stage, flag.path))
    parser.set_defaults(func=_guarded(lambda args: _run_stage(stage, args)), stage_flags=stage.flags)
    return parser


class _LazyHelp(str):
    """A flag's help, finished with its config field's choices and default only when ``--help`` prints it
    (argparse formats a help text as ``help % params``)."""

    def __new__(cls, text: str, stage, path: str) -> _LazyHelp:
        help_text = super().__new__(cls, text or path)
        help_text.stage, help_text.path = stage, path
        return help_text

    def __mod__(self, params: Any) -> str:
        from pipeline.stages import config_default, config_hint

        hint = config_hint(self.stage.config, self.path)
        notes = [f"one of {', '.join(map(str, typing.get_args(hint)))}"] if typing.get_origin(hint) is typing.Literal \
            else []
        default = config_default(self.stage.config, self.path)
        if default is not None:
            notes.append(f"default: {','.join(map(str, default)) if isinstance(default, tuple) else default}")
        text = str(self) if str(self) != self.path else ""
        return (f"{text} ({'; '.join(notes)})" if notes else text).strip().replace("%", "%%") % params


def _stage_config(stage, args: argparse.Namespace):
    """The stage's config from the flags given (the dataclass defaults for the rest), checked by
    ``from_mapping``: a bad value is a one-line error naming the flag's key."""
    from pipeline.options import deep_merge, from_mapping

    mapping: dict[str, Any] = {}
    for flag in stage.flags:
        raw = getattr(args, flag.option.lstrip("-").replace("-", "_"))
        if raw is None or raw is False:
            continue
        mapping = deep_merge(mapping, flag.mapping(True if flag.switch and flag.to_config is None else raw))
    return from_mapping(stage.config, mapping, path=stage.name)


def _run_stage(stage, args: argparse.Namespace) -> int:
    """Run the stage; stdout carries only its JSON report. While the stage runs, what would reach stdout goes
    to stderr: Ray's driver prints the errors the cluster pushes (a worker that died, and the retry of its
    task) to stdout, whatever ``log_to_driver`` says, which broke the JSON when a worker was retried."""
    import contextlib

    config = _stage_config(stage, args)
    with contextlib.redirect_stdout(sys.stderr):
        stage_run = stage.run(_store(args), args.inputs, _output_name(args, args.inputs), config, _run(args))
    described = stage.describe(stage_run.manifest, _store(args))
    if described:
        print(described, file=sys.stderr)
    return _report(stage_run)


def _store(args: argparse.Namespace):
    from pipeline.versions import DatasetStore

    return DatasetStore(args.store) if args.store else DatasetStore.default()


def _output_name(args: argparse.Namespace, inputs: list[str]) -> str:
    """``--name``, else the name of the one dataset the inputs are versions of (``logos split mydata``)."""
    if args.name:
        return args.name
    names = {ref.partition("@")[0] for ref in inputs}
    known = _store(args).names()
    if len(names) == 1:
        name = names.pop()
        if name in known:
            return name
    import glob

    missing = [ref for ref in inputs if "://" not in ref and not glob.glob(ref)]
    if missing:  # neither a dataset nor shards: say so rather than ask for --name
        raise ValueError(f"INPUT {missing[0]!r}: no dataset of that name in {_store(args).root} (have: "
                         f"{', '.join(known) or 'none'}) and no such shard folder or file")
    raise ValueError("--name is required when INPUT is not a dataset NAME[@VERSION] of the store")


def _run(args: argparse.Namespace) -> dict[str, Any] | None:
    return {"run_id": args.run_id} if args.run_id else None


_STARTED = [0.0]  # when the current command's handler began (set by _guarded), for its one progress line


def _report(stage_run) -> int:
    """The counts as JSON on stdout; one line on stderr: the version, its records, the seconds it took."""
    manifest = stage_run.manifest
    state = "reused" if stage_run.reused else "registered"
    print(json.dumps({"dataset": manifest.ref, "state": state, "counts": manifest.counts}, indent=1))
    records = sum(n for split in (manifest.counts.get("records") or {}).values() for n in split.values())
    print(f"{state} {manifest.ref} ({manifest.stage}): {records:,} records  "
          f"[{time.perf_counter() - _STARTED[0]:.1f} s]", file=sys.stderr)
    return 0


def _guarded(handler):
    """One line ``error: ...`` for an expected error, with the exit code of ``workflows.errors``: 2 for a
    usage error (a wrong name, path, flag value or layout), 1 for a failure (an input that cannot be read,
    missing credentials, a partition whose worker kept dying). A refused argument value (a plain
    ``ValueError`` from the flags, e.g. ``--weights molecule``) is a usage error; anything else is a bug and
    keeps its traceback (as does every error under ``logos -v``)."""

    def run(args: argparse.Namespace) -> int:
        from workflows.errors import USAGE, user_error

        _STARTED[0] = time.perf_counter()
        try:
            return handler(args)
        except Exception as exc:
            found = None if getattr(args, "verbose", False) else user_error(exc)
            if found is None and isinstance(exc, ValueError) and not getattr(args, "verbose", False):
                found = " ".join(str(exc).split()), USAGE
            if found is None:
                raise
            print(f"error: {found[0]}", file=sys.stderr)
            return found[1]

    return run


@_guarded
def _list(args: argparse.Namespace) -> int:
    store = _store(args)
    rows = []
    for name in store.names():
        for manifest in store.versions(name):
            records = sum(n for split in manifest.counts.get("records", {}).values() for n in split.values())
            inputs = ", ".join(i.label() if i.name else i.uri for i in manifest.inputs)
            rows.append({"dataset": manifest.ref, "stage": manifest.stage, "created": manifest.created,
                         "records": records, "inputs": inputs})
    if args.json:
        print(json.dumps(rows, indent=1))
    for row in [] if args.json else rows:
        created = row["created"][:19]
        print(f"{row['dataset']:40} {row['stage']:16} {created:20} {row['records']:>10}  <- {row['inputs']}")
    return 0


@_guarded
def _show(args: argparse.Namespace) -> int:
    print(_store(args).manifest(args.ref).to_json())
    return 0


@_guarded
def _diff(args: argparse.Namespace) -> int:
    from pipeline.datasets import diff

    print(json.dumps(diff(_store(args), args.a, args.b, args.show), indent=1))
    return 0
