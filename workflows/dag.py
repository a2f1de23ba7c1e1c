"""The workflow DAG, in Apache Hamilton's style: each function is a stage, its parameters name the
stages (or inputs) it consumes, its return value is what it produced (a descriptor, see
``workflows.refs``). The runner (``workflows.runner``) caches stage results keyed on code, config
and input versions, and can execute the stages on Ray.

    <source>_files -> <source>_shards -> ingested -> dedup -> split -> mix -> export
        -> trained -> hf_model -> evaluated (with export: its test split; trained: its checkpoints)
    export, trained, evaluated -> report

The dataset stages (dedup, split, mix, export) are one generated node each (``dataset_stage``), from the
stage registry ``pipeline.stages.REGISTRY``: their names, upstream nodes and configs are declared there.

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
from pipeline.stages import REGISTRY as DATASET_STAGES
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
    out = workspace.uri("ingest", source_name, address)  # local or object storage: every worker writes there
    if workspace.has("ingest", source_name, address, "summary.json"):  # written last: the shards are whole
        return _shards_ref(source_name, out)
    if workspace.dry_run:
        return Planned(f"{source_name}_shards")
    workspace.enter(f"{source_name}_shards")
    from pipeline.ingest import IngestConfig, run_ingest

    run_ingest(IngestConfig(
        source=source_name, inputs=list(files.uris), out=out, source_options=spec["options"],
        workers=workspace.workers, ray_address=workspace.ray_address, chunk_items=workspace.chunk_items,
        tokenizer_engine=workspace.tokenizer_engine, tokenizer=tokenizer_dir,
    ))
    return _shards_ref(source_name, out)


def _shards_ref(source_name: str, out: str) -> ShardsRef:
    from pipeline.io import join_uri, read_text

    summary = json.loads(read_text(join_uri(out, "summary.json")))
    return ShardsRef(source_name, out, summary["items"], summary["records"])


@inject(shards=group(*(source(f"{s}_shards") for s in SOURCE_NAMES)))
def ingested(shards: list[ShardsRef | Planned | None]) -> list[ShardsRef | Planned]:
    """Every configured source's shards, in source-name order (one input per registered source)."""
    return [s for s in shards if s is not None]


@parameterize(**{
    stage.name: ({"stage_name": value(stage.name), "upstream": source(stage.upstream),
                  "settings": source(f"{stage.name}_settings")}, stage.summary)
    for stage in DATASET_STAGES.values()
})
@ray_remote_options(num_cpus=0)  # the dataset stages orchestrate (pipeline.stages.Resources): no CPU of their own
def dataset_stage(stage_name: str, upstream: Any, settings: dict, dataset_name: str,
                  workspace: Workspace) -> DatasetRef | Planned:
    """One node per dataset stage of ``pipeline.stages.REGISTRY`` (dedup, split, mix, export), each reading
    its ``upstream`` node and its ``<stage>_settings``; the store finds or makes the version."""
    from pipeline.options import from_mapping
    from pipeline.versions.stage import planning

    if any(isinstance(u, Planned) for u in (upstream if isinstance(upstream, list) else [upstream])):
        return Planned(stage_name)
    stage = DATASET_STAGES[stage_name]
    inputs = [s.uri for s in upstream] if isinstance(upstream, list) else [upstream.ref]
    config = from_mapping(stage.config, settings, path=stage_name)
    lineage = workspace.lineage(stage_name)
    if workspace.dry_run:
        with planning():  # resolves the version and looks it up, computes nothing
            found = stage.run(workspace.store, inputs, dataset_name, config, lineage)
        return _dataset(found, workspace) if found.manifest is not None else Planned(stage_name)
    return _dataset(stage.run(workspace.store, inputs, dataset_name, config, lineage,
                              on_compute=lambda: workspace.enter(stage_name)), workspace)


def _dataset(run: Any, workspace: Workspace) -> DatasetRef:
    manifest = run.manifest
    return DatasetRef(str(workspace.store.root), manifest.name, manifest.version, manifest.stage,
                      dict(manifest.outputs))


def _planned(stage: str, *upstream: Any) -> Planned | None:
    if any(isinstance(u, Planned) for u in upstream):
        return Planned(stage)
    return None


@ray_remote_options(num_cpus=0)
def trained(export: DatasetRef | Planned, train_settings: dict | None,
            workspace: Workspace) -> TrainedRef | Planned | None:
    """Megatron-Core pretraining on the exported blend; resumes from its own last checkpoint."""
    if train_settings is None:
        return None
    if (planned := _planned("trained", export)) is not None:
        return planned
    from pipeline.options import deep_merge
    from training.config import config_from_dict

    run_dir = workspace.path("training", content_address(export.ref, train_settings))
    settings = deep_merge(train_settings, {"run_dir": str(run_dir), "data": {"blend": str(export.blend_path())}})
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
        {**workspace.lineage("train"), "dataset": export.ref, "blend": str(export.blend_path())}, indent=1))
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
              export: DatasetRef | Planned, eval_settings: dict | None,
              workspace: Workspace) -> FolderRef | Planned | None:
    """``logos eval`` of the exported model on the exported dataset's test split: one results JSON, and with
    ``every_checkpoint`` the metrics of each training checkpoint (``curves.json``, written last)."""
    if hf_model is None or eval_settings is None:
        return None
    if any(isinstance(u, Planned) for u in (hf_model, trained, export)):
        return Planned("evaluated")
    from training.evaluation.run import CURVES_FILE, RESULTS_FILE

    main_file = CURVES_FILE if eval_settings.get("every_checkpoint") else RESULTS_FILE
    out = workspace.path("eval", content_address(hf_model.path, export.ref, eval_settings))
    if (out / main_file).is_file():
        return FolderRef(str(out), main_file)
    if workspace.dry_run:
        return Planned("evaluated")
    workspace.enter("evaluated")
    from pipeline.options import from_mapping
    from training.evaluation.run import EvalConfig, evaluate, evaluate_checkpoints

    config = from_mapping(EvalConfig, eval_settings)
    results = evaluate(hf_model.path, export.ref, config, out, workspace.store)
    if config.every_checkpoint and trained is not None:
        evaluate_checkpoints(trained.run_dir, export.ref, config, out, workspace.store,
                             known={str(trained.checkpoint): results})
    return FolderRef(str(out), main_file)


@ray_remote_options(num_cpus=0)
def report(export: DatasetRef | Planned, trained: TrainedRef | Planned | None,
           evaluated: FolderRef | Planned | None, report_enabled: bool,
           workspace: Workspace) -> FolderRef | Planned | None:
    """The HTML report of the exported dataset, with the training curves when this run trained and the
    task metrics when it evaluated."""
    if not report_enabled:
        return None
    if any(isinstance(u, Planned) for u in (export, trained, evaluated)):
        return Planned("report")
    metrics = trained.metrics_path if trained is not None else None
    results = Path(evaluated.path) / "results.json" if evaluated is not None else None
    out = workspace.path("reports", content_address(export.ref, metrics and os.path.getmtime(metrics),
                                                    results and str(results)))
    if (out / "index.html").is_file():
        return FolderRef(str(out), "index.html")
    if workspace.dry_run:
        return Planned("report")
    workspace.enter("report")
    from workflows.report import write_report

    write_report(workspace.store, export.ref, out, metrics_file=Path(metrics) if metrics else None,
                 runs_root=workspace.path("runs"), eval_results=results,
                 this_run={**workspace.lineage("report"), "executed": workspace.executed()})
    return FolderRef(str(out), "index.html")


def as_plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
