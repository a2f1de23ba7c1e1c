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
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a package whose commands are not written yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
