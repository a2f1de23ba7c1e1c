"""``logos train CONFIG``, ``logos launch CONFIG --address ...``, ``logos export hf CHECKPOINT --out DIR``,
``logos import hf HF_DIR --out CHECKPOINT``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from training.errors import TrainingError


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="pretrain with Megatron-Core (local ranks or Ray Train)")
    train.add_argument("config", help="training YAML (see training/config.py)")
    _add_overrides(train)
    train.add_argument("--ray", action="store_true", help="run the ranks as Ray Train TorchTrainer workers")
    train.add_argument("--ray-address", help="Ray cluster address for --ray (default: start a local Ray)")
    train.set_defaults(func=_train)

    launch = subparsers.add_parser("launch", help="submit a training run to a Ray cluster as a Ray Job")
    launch.add_argument("config", help="training YAML; its paths must be valid on the cluster")
    _add_overrides(launch)
    launch.add_argument("--address", required=True, help="Ray dashboard/job address, e.g. http://head:8265")
    launch.add_argument("--wait", action="store_true", help="follow the job's logs until it ends")
    launch.add_argument("--runtime-env", metavar="JSON|FILE",
                        help="added to the job's Ray runtime_env, e.g. '{\"env_vars\": {\"LOGOS_PYTHON\": "
                             "\"/opt/venv/bin/python\"}}' or py_modules/pip/image_uri (a JSON object or a YAML file)")
    launch.set_defaults(func=_launch)

    hf = _export_formats(subparsers).add_parser(
        "hf", help="transformers Llama/Qwen3 checkpoint plus the grammar tokenizer")
    hf.add_argument("checkpoint", help="checkpoint directory (a run's checkpoints/ or one iter_* directory)")
    hf.add_argument("--out", required=True, help="output directory")
    hf.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    hf.set_defaults(func=_export_hf)

    formats = subparsers.add_parser("import", help="import a model from another format").add_subparsers(
        dest="format", required=True, metavar="FORMAT")
    hf_in = formats.add_parser("hf", help="transformers Llama/Qwen3 safetensors -> Megatron checkpoint (step 0)")
    hf_in.add_argument("hf_dir", help="local Hugging Face model directory (config.json, *.safetensors, tokenizer)")
    hf_in.add_argument("--out", required=True, help="checkpoint directory to create (must not exist or be empty)")
    hf_in.add_argument("--tensor", type=int, default=1, help="tensor-parallel size to build the model at")
    hf_in.add_argument("--pipeline", type=int, default=1, help="pipeline-parallel size to build the model at")
    hf_in.add_argument("--tokenizer", help="tokenizer directory (e.g. the model's tokenizer extended with the "
                       "grammar); the embedding grows to its vocabulary. Default: the HF directory's tokenizer")
    hf_in.set_defaults(func=_import_hf)


def _export_formats(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The FORMAT subcommands of ``logos export``, which the dataset stage also adds to (``megatron``)."""
    export = subparsers.choices.get("export")
    if export is None:
        export = subparsers.add_parser("export", help="export a dataset version or a checkpoint")
        return export.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for action in export._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError("`logos export` exists without format subcommands")


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set parallel.tensor=2 (repeatable)")


def _fail(exc: BaseException) -> int:
    """A usage error (config, data, checkpoint, layout): one line, exit 2. A run that started and failed is
    re-raised for the ``logos`` entry point to report as a failure (exit 1, ``workflows.errors``)."""
    from training.launch import LaunchError

    if isinstance(exc, LaunchError) and "\n" in str(exc):
        raise exc
    print(f"error: {exc}", file=sys.stderr)
    return 2


def _config_file(path: str) -> str:
    """The training YAML; a missing one is named with the bundled configs, the usual fix."""
    from pathlib import Path

    if not Path(path).is_file():
        bundled = Path(__file__).parent / "configs"
        names = ", ".join(sorted(p.name for p in bundled.glob("*.yaml")))
        raise TrainingError(f"no training config {path}: give a YAML file, e.g. one of training/configs/ ({names})")
    return path


def _train(args: argparse.Namespace) -> int:
    from training.config import load_config

    overrides = list(args.overrides)
    if args.ray:
        overrides.append("launch.backend=ray")
    if args.ray_address:
        overrides.append(f"launch.ray_address={args.ray_address}")
    from pipeline.ray_cluster import ClusterError, prepare_join

    try:
        from training.run import train

        if args.ray_address:  # the address and token first: a user fixes one thing at a time
            prepare_join(args.ray_address)
        result = train(load_config(_config_file(args.config), overrides))
    except (TrainingError, ClusterError) as exc:
        return _fail(exc)
    print(json.dumps({k: str(v) if v is not None and not isinstance(v, int | float | dict) else v
                      for k, v in asdict(result).items()}, indent=1))
    return 0


def _launch(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.ray_launch import JobFailed, follow_command, load_runtime_env, submit_job

    try:
        runtime_env = load_runtime_env(args.runtime_env) if args.runtime_env else None
        job_id = submit_job(load_config(_config_file(args.config), args.overrides), args.address, wait=args.wait,
                            runtime_env=runtime_env)
    except JobFailed as exc:  # submitted and ran: not a usage error
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except TrainingError as exc:
        return _fail(exc)
    print(job_id)
    if not args.wait:
        print(f"submitted Ray Job {job_id}; follow it with: {follow_command(job_id, args.address)}", file=sys.stderr)
    return 0


def _export_hf(args: argparse.Namespace) -> int:
    from training.hf_export import export_hf

    try:
        out = export_hf(args.checkpoint, args.out, dtype=args.dtype)
    except TrainingError as exc:
        return _fail(exc)
    print(out)
    return 0


def _import_hf(args: argparse.Namespace) -> int:
    from training.hf_import import import_hf

    try:
        out = import_hf(args.hf_dir, args.out, tensor=args.tensor, pipeline=args.pipeline, tokenizer=args.tokenizer)
    except TrainingError as exc:
        return _fail(exc)
    print(out)
    return 0
