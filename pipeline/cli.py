"""``logos ingest`` and ``logos check roundtrip``."""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.sources import SOURCES


def register(subparsers: argparse._SubParsersAction) -> None:
    ingest = subparsers.add_parser("ingest", help="source files -> tokenized Parquet shards (Ray)")
    ingest.add_argument("source", choices=sorted(SOURCES))
    ingest.add_argument("inputs", nargs="+", metavar="INPUT", help="files, globs, directories or s3:// URIs")
    ingest.add_argument("--out", required=True, help="output directory or URI")
    ingest.add_argument("--ccd", help="pdb: a components.cif(.gz) consulted before the bundled CCD")
    ingest.add_argument("--workers", type=int, help="parallel converters (default: all CPUs Ray offers)")
    ingest.add_argument("--ray-address", help="join this Ray cluster instead of starting a local one")
    ingest.add_argument("--chunk-items", type=int, help="items per output part")
    ingest.add_argument("--tokenizer", metavar="DIR",
                        help="a saved tokenizer directory, native or extended (`logos grammar vocab [--extend]`); "
                             "default: the built-in grammar vocabulary")
    ingest.add_argument("--tokenizer-engine", choices=["python", "rust"], default="python")
    _add_options(ingest)
    ingest.set_defaults(func=_ingest)

    check = subparsers.add_parser("check", help="checks over source files")
    actions = check.add_subparsers(dest="check_command", required=True, metavar="ACTION")
    roundtrip = actions.add_parser("roundtrip", help="parse, serialize, decode and validate every record")
    roundtrip.add_argument("--source", required=True, choices=sorted(SOURCES))
    roundtrip.add_argument("inputs", nargs="+", metavar="INPUT")
    roundtrip.add_argument("--ccd", help="pdb: a components.cif(.gz) consulted before the bundled CCD")
    roundtrip.add_argument("--json", action="store_true", help="print the counts as JSON")
    roundtrip.add_argument("--failures", metavar="FILE",
                           help="write every record whose round trip failed as JSON Lines (file, locator, id, task, "
                                "reason, detail); the file is written, empty, when none failed. Exit 1 on any failure")
    _add_options(roundtrip)
    roundtrip.set_defaults(func=_roundtrip)


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--option", "-o", action="append", metavar="KEY=VALUE", default=[],
                        help="a source option (see the source's config dataclass), repeatable")


def _options(args: argparse.Namespace) -> dict[str, str]:
    """The source options, checked against the source's config dataclass here, before Ray starts: a
    misspelt ``-o`` key is one line naming the known keys, not a failure inside every Ray worker."""
    from pipeline.options import ConfigError, from_mapping, parse_assignments
    from pipeline.sources import config_class

    options = parse_assignments(args.option)
    if args.ccd:
        if args.source != "pdb":
            raise ConfigError("--ccd applies to the pdb source only")
        options["components_path"] = args.ccd
    try:
        from_mapping(config_class(args.source), options)
    except ConfigError as exc:
        raise ConfigError(f"-o: {exc} (the {args.source} source's options)") from None
    return options


def _ingest(args: argparse.Namespace) -> int:
    from pipeline.ingest import IngestConfig, run_ingest

    config = IngestConfig(
        source=args.source, inputs=args.inputs, out=args.out, source_options=_options(args), workers=args.workers,
        ray_address=args.ray_address, chunk_items=args.chunk_items, tokenizer_engine=args.tokenizer_engine,
        tokenizer=args.tokenizer,
    )
    if args.tokenizer:
        from grammar.errors import GrammarError
        from grammar.tokenizer import load_tokenizer

        try:  # before anything is written
            load_tokenizer(args.tokenizer)
        except GrammarError as exc:
            print(f"logos ingest: --tokenizer: {exc}", file=sys.stderr)
            return 2
    from pipeline.ray_cluster import ClusterError, prepare_join

    try:
        if args.ray_address:  # before the output folders are reset
            prepare_join(args.ray_address)
        summary = run_ingest(config).as_dict()
    except ClusterError as exc:
        print(f"logos ingest: {exc}", file=sys.stderr)
        return 2
    items = summary["items"]
    print(json.dumps(summary, indent=1))
    print(f"read {items['read']} = written {items['written']} + rejected {items['rejected']}; "
          f"{summary['records']} records, {summary['tokens']} tokens -> {args.out}  [{summary['elapsed_s']:.1f} s]",
          file=sys.stderr)
    if items["read"] and not items["written"]:
        # Nothing usable came out: a script must not go on as if it had shards (the rejects say why).
        print(f"logos ingest: every one of the {items['read']} items was rejected; see {args.out}/rejects/",
              file=sys.stderr)
        return 1
    return 0


def _roundtrip(args: argparse.Namespace) -> int:
    from pipeline.check import check_roundtrip

    failures: list = []
    report = check_roundtrip(args.source, args.inputs, _options(args), failures)
    if args.failures:
        with open(args.failures, "w") as handle:
            handle.writelines(json.dumps(failure.as_dict()) + "\n" for failure in failures)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for domain, counts in report["domains"].items():
            print(f"{domain:10s} read={counts['read']} valid={counts['valid']} "
                  f"round_trip_ok={counts['round_trip_ok']} rejected={counts['rejected']}")
    if failures:
        where = f"; listed in {args.failures}" if args.failures else "; --failures FILE lists them"
        print(f"logos check roundtrip: {len(failures)} records failed the round trip{where}", file=sys.stderr)
        return 1
    return 0
