"""``logos dedup | split | mix | export megatron`` and ``logos datasets list | show | diff``.

Each stage command reads dataset names (``NAME[@VERSION]``) or shard URIs and writes a new dataset
version into the store (``--store``, default ``$LOGOS_HOME/datasets`` or ``./.logos/datasets``);
running it again with the same inputs and options reuses the registered version.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    dedup = _stage(subparsers, "dedup", "exact + near-duplicate removal -> a new dataset version", many=True)
    dedup.add_argument("--source-priority", default="", help="comma-separated sources that win ties, best first")
    dedup.add_argument("--no-near", action="store_true", help="exact dedup only")
    dedup.add_argument("--near-threshold", type=float, default=0.8)
    dedup.add_argument("--num-perm", type=int, default=128)
    dedup.add_argument("--bands", type=int, default=16)
    dedup.add_argument("--shingle", type=int, default=5, help="token n-gram length")
    dedup.add_argument("--near-domains", default="protein", help="comma-separated domains, or 'all'")
    dedup.add_argument("--ray", action="store_true", help="compute MinHash signatures on Ray Data")
    dedup.add_argument("--streaming", action="store_true", help="exact dedup over the files with flat memory")
    dedup.add_argument("--bucket-rows", type=int, default=1_000_000, help="streaming: rows per hash bucket")
    dedup.set_defaults(func=_dedup)

    split = _stage(subparsers, "split", "leakage-free train/valid/test split -> a new dataset version")
    split.add_argument("--fractions", default="0.9,0.05,0.05", help="train,valid,test")
    split.add_argument("--exclude", type=Path, help="file of benchmark items removed (with their groups) from train")
    split.add_argument("--protein-clustering", choices=["auto", "mmseqs", "minhash"], default="auto")
    split.add_argument("--min-seq-id", type=float, default=0.3)
    split.add_argument("--coverage", type=float, default=0.8)
    split.add_argument("--time-split", metavar="VALID_FROM:TEST_FROM", help="reactions by year, e.g. 2012:2015")
    split.add_argument("--salt", default="logos-split/1")
    split.add_argument("--ray", action="store_true", help="compute group keys (RDKit, parsing) on Ray Data")
    split.set_defaults(func=_split)

    mix = _stage(subparsers, "mix", "domain mixture weights and report -> a new dataset version")
    mix.add_argument("--weights", help="explicit weights, e.g. molecule=0.6,protein=0.4 (else temperature)")
    mix.add_argument("--temperature", type=float, help="p_i ∝ n_i^(1/T) (neither: LOGOS's published token shares)")
    mix.add_argument("--max-epochs", type=float, help="cap on epochs per domain and split")
    mix.add_argument("--budget", help="tokens per split, e.g. train=1000000 (default: the split's tokens)")
    mix.set_defaults(func=_mix)

    export = subparsers.add_parser("export", help="export a dataset version for training")
    formats = export.add_subparsers(dest="format", required=True, metavar="FORMAT")
    megatron = _stage(formats, "megatron", ".bin/.idx per split and domain + blend -> a new dataset version")
    megatron.add_argument("--docs-per-shard", type=int, default=1_000_000)
    megatron.add_argument("--no-verify", action="store_true", help="skip reading the files back")
    megatron.set_defaults(func=_export_megatron)

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


def _stage(subparsers: argparse._SubParsersAction, name: str, help: str, many: bool = False) -> argparse.ArgumentParser:
    parser = _with_store(subparsers.add_parser(name, help=help))
    parser.add_argument("inputs" if many else "input", nargs="+" if many else None, metavar="INPUT",
                        help="dataset NAME[@VERSION], or tokenized shards: an ingest output folder, files or globs")
    parser.add_argument("--name", help="name of the dataset this writes a version of (default: the input "
                        "dataset's name when INPUT is NAME[@VERSION])")
    parser.add_argument("--run-id", help="recorded in the manifest's run lineage")
    return parser


def _store(args: argparse.Namespace):
    from pipeline.versions import DatasetStore

    return DatasetStore(args.store) if args.store else DatasetStore.default()


def _pairs(text: str | None, cast: type) -> dict[str, Any]:
    pairs = {}
    for item in filter(None, (text or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        pairs[key.strip()] = cast(value)
    return pairs


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
    def run(args: argparse.Namespace) -> int:
        from pipeline.datasets import InputError
        from pipeline.export_megatron import ExportError
        from pipeline.split import SplitError
        from pipeline.versions import DatasetNotFound

        _STARTED[0] = time.perf_counter()
        try:
            return handler(args)
        except (DatasetNotFound, InputError, SplitError, ExportError, ValueError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


@_guarded
def _dedup(args: argparse.Namespace) -> int:
    from pipeline.datasets import dedup_dataset
    from pipeline.dedup import ExactDedupConfig, StreamingConfig
    from pipeline.near_dedup import NearDedupConfig

    priority = tuple(s.strip() for s in args.source_priority.split(",") if s.strip())
    domains = None if args.near_domains == "all" else tuple(d.strip() for d in args.near_domains.split(","))
    near = None if args.no_near else NearDedupConfig(
        threshold=args.near_threshold, num_perm=args.num_perm, bands=args.bands, shingle=args.shingle,
        domains=domains, use_ray=args.ray, source_priority=priority,
    )
    streaming = StreamingConfig(bucket_rows=args.bucket_rows) if args.streaming else None
    exact = ExactDedupConfig(priority)
    name = _output_name(args, args.inputs)
    return _report(dedup_dataset(_store(args), args.inputs, name, exact, near, _run(args), streaming))


@_guarded
def _split(args: argparse.Namespace) -> int:
    from pipeline.datasets import split_dataset
    from pipeline.split import ProteinClusterConfig, SplitConfig, TimeSplit, read_exclusions

    fractions = tuple(float(f) for f in args.fractions.split(","))
    time_split = None
    if args.time_split:
        valid_from, _, test_from = args.time_split.partition(":")
        time_split = TimeSplit(int(valid_from), int(test_from))
    proteins = ProteinClusterConfig(args.protein_clustering, args.min_seq_id, args.coverage)
    config = SplitConfig(fractions, args.salt, proteins, time_split, use_ray=args.ray)
    exclude = read_exclusions(args.exclude.read_text().splitlines()) if args.exclude else []
    name = _output_name(args, [args.input])
    return _report(split_dataset(_store(args), args.input, name, config, exclude, _run(args)))


@_guarded
def _mix(args: argparse.Namespace) -> int:
    from pipeline.datasets import mix_dataset
    from pipeline.mix import MixConfig, Mixture

    weights = _pairs(args.weights, float) or None
    config = MixConfig(weights, args.temperature, args.max_epochs, _pairs(args.budget, int))
    stage_run = mix_dataset(_store(args), args.input, _output_name(args, [args.input]), config, _run(args))
    print(Mixture.from_dict(stage_run.manifest.outputs["mixture"]).table(), file=sys.stderr)
    return _report(stage_run)


@_guarded
def _export_megatron(args: argparse.Namespace) -> int:
    from pipeline.datasets import export_megatron_dataset
    from pipeline.export_megatron import ExportConfig

    config = ExportConfig(docs_per_shard=args.docs_per_shard, verify=not args.no_verify)
    stage_run = export_megatron_dataset(_store(args), args.input, _output_name(args, [args.input]), config, _run(args))
    print(f"blend: {_store(args).root / stage_run.manifest.outputs['blend']}", file=sys.stderr)
    return _report(stage_run)


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
