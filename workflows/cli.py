"""The ``logos`` command. Each package registers its own subcommands; heavy imports happen lazily."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module exposes ``register(subparsers)``; handlers are set with ``set_defaults(func=...)``.
COMMAND_MODULES = ("grammar.cli", "pipeline.cli", "pipeline.dataset_cli", "training.cli",
                   "training.evaluation.cli", "workflows.commands")


def _version() -> str:
    """The installed distribution's version, plus the grammar's (both name what produced a dataset)."""
    from importlib.metadata import PackageNotFoundError, version

    from grammar.vocab import VOCAB_VERSION

    try:
        package = version("logos")
    except PackageNotFoundError:  # run from a checkout that was not installed
        package = "unknown (not installed)"
    return f"{package}, grammar {VOCAB_VERSION}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="logos", description=__doc__)
    parser.add_argument("--version", action="version", version=f"logos {_version()}")
    parser.add_argument(*VERBOSE_FLAGS, action="store_true", help=VERBOSE_HELP)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a package whose commands are not written yet
                continue
            raise
        module.register(subparsers)
    _add_verbose(subparsers)
    return parser


VERBOSE_FLAGS = ("-v", "--verbose")
VERBOSE_HELP = "show third-party warnings, Ray's logs, the training ranks' output and full tracebacks"


def _add_verbose(subparsers: argparse._SubParsersAction) -> None:
    """``-v`` after any (sub)command too (``logos run demo -v``); SUPPRESS keeps a flag given earlier."""
    for parser in set(subparsers.choices.values()):
        if not any(option in parser._option_string_actions for option in VERBOSE_FLAGS):
            parser.add_argument(*VERBOSE_FLAGS, action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_verbose(action)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from pipeline.console import configure

    # Before Ray, torch or transformers are imported; native stderr diverted only for the real command
    # (argv None), not when a test calls main() under pytest's capture.
    configure(show_all=args.verbose, divert=argv is None)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from workflows.errors import user_error

        found = None if args.verbose else user_error(exc)
        if found is None:  # a bug (or -v): the traceback is the report
            raise
        message, code = found
        print(f"logos {args.command}: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
