"""The workflow DAG, in Apache Hamilton's style: each function is a stage, its parameters name the
stages (or inputs) it consumes, its return value is what it produced (a descriptor, see
``workflows.refs``). The runner (``workflows.runner``) caches stage results keyed on code, config
and input versions, and can execute the stages on Ray.

    <source>_files -> <source>_shards -> ingested -> deduplicated -> split -> mixed -> exported
        -> trained -> hf_model -> evaluated (with exported: its test split; trained: its checkpoints)
    exported, trained, evaluated -> report

Every stage also writes content-addressed outputs (ingest folders, dataset versions, training runs),
so a stage asked again for the same inputs and config finds its output instead of recomputing.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from hamilton.function_modifiers import group, inject, parameterize, source, value
from hamilton.function_modifiers.metadata import ray_remote_options

from pipeline.sources import SOURCES, source_class
from workflows.refs import DatasetRef, FileSet, FolderRef, ShardsRef, TrainedRef
from workflows.workspace import Planned, Workspace, content_address

SOURCE_NAMES = tuple(sorted(SOURCES))


@parameterize(**{f"{s}_files": {"source_name": value(s), "spec": source(f"{s}_spec")} for s in SOURCE_NAMES})
def source_files(source_name: str, spec: dict | None) -> FileSet | None:
    """The files a source's inputs name right now, fingerprinted by name, size and modification time."""
    if spec is None:
        return None
    from fsspec.core import url_to_fs

    from pipeline.io import expand_inputs

    uris = expand_inputs(spec["inputs"], getattr(source_class(source_name), "suffixes", ()))
    stats = []
    for uri in uris:
        fs, path = url_to_fs(uri)
        info = fs.info(path)
        stats.append([uri, info.get("size"), info.get("mtime") or info.get("LastModified") or info.get("ETag")])
    return FileSet(source_name, tuple(uris), content_address(stats))


@parameterize(
    **{
        f"{s}_shards": {"source_name": value(s), "files": source(f"{s}_files"), "spec": source(f"{s}_spec")}
        for s in SOURCE_NAMES
    }
)
@ray_remote_options(num_cpus=0)  # an orchestrating stage: its work asks Ray for resources itself
def source_shards(
    source_name: str, files: FileSet | None, spec: dict | None, code_version: str, tokenizer_dir: str,
    workspace: Workspace,
) -> ShardsRef | Planned | None:
    """Ingest one source into tokenized Parquet shards (Ray Data), in a folder named by what made it
    (``tokenizer_dir`` is named by the tokenizer's hash: another tokenizer, other shards)."""
    if files is None or spec is None:
        return None
    address = content_address(files.fingerprint, spec["options"], code_version, Path(tokenizer_dir).name)
    out = workspace.path("ingest", source_name, address)
    if (out / "summary.json").is_file():
        return _shards_ref(source_name, out)
    if workspace.dry_run:
        return Planned(f"{source_name}_shards")
    workspace.enter(f"{source_name}_shards")
    from pipeline.ingest import IngestConfig, run_ingest

    run_ingest(IngestConfig(
        source=source_name, inputs=list(files.uris), out=str(out), source_options=spec["options"],
        workers=workspace.workers, ray_address=workspace.ray_address, chunk_items=workspace.chunk_items,
        tokenizer_engine=workspace.tokenizer_engine, tokenizer=tokenizer_dir,
    ))
    return _shards_ref(source_name, out)


def _shards_ref(source_name: str, out: Path) -> ShardsRef:
    summary = json.loads((out / "summary.json").read_text())
    return ShardsRef(source_name, str(out), summary["items"], summary["records"])


@inject(shards=group(*(source(f"{s}_shards") for s in SOURCE_NAMES)))
def ingested(shards: list[ShardsRef | Planned | None]) -> list[ShardsRef | Planned]:
    """Every configured source's shards, in source-name order (one input per registered source)."""
    return [s for s in shards if s is not None]


def _dataset(run: Any, store_root: Path) -> DatasetRef:
    manifest = run.manifest
    return DatasetRef(str(store_root), manifest.name, manifest.version, manifest.stage, dict(manifest.outputs))


def _planned(stage: str, *upstream: Any) -> Planned | None:
    if any(isinstance(u, Planned) for u in upstream):
        return Planned(stage)
    return None


@ray_remote_options(num_cpus=0)
def deduplicated(ingested: list, dedup_settings: dict, dataset_name: str, workspace: Workspace) -> DatasetRef | Planned:
    """Exact then near dedup over all sources' shards: the first dataset version of a run."""
    if (planned := _planned("deduplicated", *ingested)) is not None:
        return planned
    from pipeline.datasets import dedup_dataset
    from pipeline.dedup import ExactDedupConfig
    from pipeline.near_dedup import NearDedupConfig
    from pipeline.options import from_mapping

    exact = from_mapping(ExactDedupConfig, dedup_settings["exact"])
    near = from_mapping(NearDedupConfig, dedup_settings["near"]) if dedup_settings["near"] else None
    return _stage(workspace, "deduplicated", lambda: dedup_dataset(
        workspace.store, [s.uri for s in ingested], dataset_name, exact, near, workspace.lineage("dedup")
    ))


@ray_remote_options(num_cpus=0)
def split(deduplicated: DatasetRef | Planned, split_settings: dict, dataset_name: str,
          workspace: Workspace) -> DatasetRef | Planned:
    """Whole groups (scaffolds, protein clusters, products, crystal groups) to train/valid/test."""
    if (planned := _planned("split", deduplicated)) is not None:
        return planned
    from pipeline.datasets import split_dataset
    from pipeline.options import from_mapping
    from pipeline.split import SplitConfig, read_exclusions

    config = from_mapping(SplitConfig, split_settings["config"])
    exclude_file = split_settings.get("exclude")
    exclude = read_exclusions(Path(exclude_file).read_text().splitlines()) if exclude_file else []
    return _stage(workspace, "split", lambda: split_dataset(
        workspace.store, deduplicated.ref, dataset_name, config, exclude, workspace.lineage("split")
    ))


@ray_remote_options(num_cpus=0)
def mixed(split: DatasetRef | Planned, mix_settings: dict, dataset_name: str,
          workspace: Workspace) -> DatasetRef | Planned:
    """Per-domain sampling weights (explicit or temperature, epoch cap)."""
    if (planned := _planned("mixed", split)) is not None:
        return planned
    from pipeline.datasets import mix_dataset
    from pipeline.mix import MixConfig
    from pipeline.options import from_mapping

    config = from_mapping(MixConfig, mix_settings)
    return _stage(workspace, "mixed", lambda: mix_dataset(
        workspace.store, split.ref, dataset_name, config, workspace.lineage("mix")
    ))


@ray_remote_options(num_cpus=0)
def exported(mixed: DatasetRef | Planned, export_settings: dict, dataset_name: str,
             workspace: Workspace) -> DatasetRef | Planned:
    """Megatron .bin/.idx per split and domain, and the blend the trainer reads."""
    if (planned := _planned("exported", mixed)) is not None:
        return planned
    from pipeline.datasets import export_megatron_dataset
    from pipeline.export_megatron import ExportConfig
    from pipeline.options import from_mapping

    config = from_mapping(ExportConfig, export_settings)
    return _stage(workspace, "exported", lambda: export_megatron_dataset(
        workspace.store, mixed.ref, dataset_name, config, workspace.lineage("export")
    ))


def _stage(workspace: Workspace, stage: str, call) -> DatasetRef | Planned:
    from pipeline.versions.stage import planning

    with planning():  # cheap: resolves the version and looks it up, computes nothing
        found = call()
    if found.manifest is not None:
        return _dataset(found, workspace.store.root)
    if workspace.dry_run:
        return Planned(stage)
    workspace.enter(stage)
    return _dataset(call(), workspace.store.root)


@ray_remote_options(num_cpus=0)
def trained(exported: DatasetRef | Planned, train_settings: dict | None,
            workspace: Workspace) -> TrainedRef | Planned | None:
    """Megatron-Core pretraining on the exported blend; resumes from its own last checkpoint."""
    if train_settings is None:
        return None
    if (planned := _planned("trained", exported)) is not None:
        return planned
    from pipeline.options import deep_merge
    from training.config import config_from_dict

    run_dir = workspace.path("training", content_address(exported.ref, train_settings))
    settings = deep_merge(train_settings, {"run_dir": str(run_dir), "data": {"blend": str(exported.blend_path())}})
    if workspace.ray_address:
        settings = deep_merge(settings, {"launch": {"ray_address": workspace.ray_address}})
    config = config_from_dict(settings)
    result_file = run_dir / "result.json"
    if result_file.is_file():
        return _trained_ref(config)
    if workspace.dry_run:
        return Planned("trained")
    workspace.enter("trained")
    from training.run import train

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "lineage.json").write_text(json.dumps(
        {**workspace.lineage("train"), "dataset": exported.ref, "blend": str(exported.blend_path())}, indent=1))
    train(config)
    return _trained_ref(config)


def _trained_ref(config: Any) -> TrainedRef:
    from training.run import TrainResult

    result = TrainResult.read(config)
    return TrainedRef(str(result.run_dir), str(result.checkpoint) if result.checkpoint else None, result.steps,
                      result.final_loss, str(result.metrics_path), dict(result.valid_loss))


@ray_remote_options(num_cpus=0)
def hf_model(trained: TrainedRef | Planned | None, hf_export: bool, workspace: Workspace) -> FolderRef | Planned | None:
    """A transformers Llama checkpoint plus the grammar tokenizer, from the last Megatron checkpoint."""
    if trained is None or not hf_export:
        return None
    if isinstance(trained, Planned):
        return Planned("hf_model")
    out = workspace.path("hf", content_address(trained.checkpoint))
    if (out / "config.json").is_file():
        return FolderRef(str(out), "config.json")
    if workspace.dry_run:
        return Planned("hf_model")
    workspace.enter("hf_model")
    from training.hf_export import export_hf

    export_hf(trained.checkpoint, out)
    return FolderRef(str(out), "config.json")


@ray_remote_options(num_cpus=0)
def evaluated(hf_model: FolderRef | Planned | None, trained: TrainedRef | Planned | None,
              exported: DatasetRef | Planned, eval_settings: dict | None,
              workspace: Workspace) -> FolderRef | Planned | None:
    """``logos eval`` of the exported model on the exported dataset's test split: one results JSON, and with
    ``every_checkpoint`` the metrics of each training checkpoint (``curves.json``, written last)."""
    if hf_model is None or eval_settings is None:
        return None
    if any(isinstance(u, Planned) for u in (hf_model, trained, exported)):
        return Planned("evaluated")
    from training.evaluation.run import CURVES_FILE, RESULTS_FILE

    main_file = CURVES_FILE if eval_settings.get("every_checkpoint") else RESULTS_FILE
    out = workspace.path("eval", content_address(hf_model.path, exported.ref, eval_settings))
    if (out / main_file).is_file():
        return FolderRef(str(out), main_file)
    if workspace.dry_run:
        return Planned("evaluated")
    workspace.enter("evaluated")
    from pipeline.options import from_mapping
    from training.evaluation.run import EvalConfig, evaluate, evaluate_checkpoints

    config = from_mapping(EvalConfig, eval_settings)
    results = evaluate(hf_model.path, exported.ref, config, out, workspace.store)
    if config.every_checkpoint and trained is not None:
        evaluate_checkpoints(trained.run_dir, exported.ref, config, out, workspace.store,
                             known={str(trained.checkpoint): results})
    return FolderRef(str(out), main_file)


@ray_remote_options(num_cpus=0)
def report(exported: DatasetRef | Planned, trained: TrainedRef | Planned | None,
           evaluated: FolderRef | Planned | None, report_enabled: bool,
           workspace: Workspace) -> FolderRef | Planned | None:
    """The HTML report of the exported dataset, with the training curves when this run trained and the
    task metrics when it evaluated."""
    if not report_enabled:
        return None
    if any(isinstance(u, Planned) for u in (exported, trained, evaluated)):
        return Planned("report")
    metrics = trained.metrics_path if trained is not None else None
    results = Path(evaluated.path) / "results.json" if evaluated is not None else None
    out = workspace.path("reports", content_address(exported.ref, metrics and os.path.getmtime(metrics),
                                                    results and str(results)))
    if (out / "index.html").is_file():
        return FolderRef(str(out), "index.html")
    if workspace.dry_run:
        return Planned("report")
    workspace.enter("report")
    from workflows.report import write_report

    write_report(workspace.store, exported.ref, out, metrics_file=Path(metrics) if metrics else None,
                 runs_root=workspace.path("runs"), eval_results=results,
                 this_run={**workspace.lineage("report"), "executed": workspace.executed()})
    return FolderRef(str(out), "index.html")


def as_plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
