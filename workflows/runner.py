"""Running a workflow: build the Hamilton driver (cache, optional Ray adapter), plan, execute, record.

Resume and caching: Hamilton caches each stage's descriptor keyed on the stage's code, its config and
its inputs' data versions; ``ValidatingResultStore`` refuses a cached descriptor whose files are gone,
so such a stage runs again. A failed or killed run therefore resumes on the next ``logos run``: done
stages are cache hits, and the stage that failed runs. Changing one stage's settings changes only that
stage's cache key, and its dependents' (their inputs change), nothing upstream.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hamilton import base, driver
from hamilton.caching.stores.file import FileResultStore

from pipeline.io import is_remote
from pipeline.versions.manifest import code_version
from workflows import dag
from workflows.config import LoadedWorkflow, load_workflow, stage_settings
from workflows.refs import describe
from workflows.runs import RunRecord, now
from workflows.tokenizer import resolve_tokenizer
from workflows.workspace import Planned, Workspace

# The stages that do work, in order ("ingested" only gathers the shards, so it is not listed).
STAGES = (
    *(f"{s}_shards" for s in dag.SOURCE_NAMES), *dag.DATASET_STAGES, "trained", "hf_model", "evaluated", "report",
)
FAIL_ENV = "LOGOS_FAIL_STAGE"


class ValidatingResultStore(FileResultStore):
    """Hamilton's file result store, except that a descriptor whose outputs are gone is a miss."""

    def exists(self, data_version: str) -> bool:
        if not super().exists(data_version):
            return False
        value = self.get(data_version)
        return all(v.is_valid() for v in _descriptors(value))


def _descriptors(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return [d for v in value for d in _descriptors(v)]
    return [value] if hasattr(value, "is_valid") else []


@dataclass
class RunOutcome:
    record: RunRecord | None
    plan: dict[str, str]  # stage -> "run" | "done" (for a dry run: what would happen)
    results: dict[str, Any] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)


def build_driver(workspace: Workspace, *, executor: str = "local", cache: bool = True,
                 progress: Any = None) -> driver.Driver:
    builder = driver.Builder().with_modules(dag)
    if progress is not None:  # workflows.progress: a line (or a bar) per stage
        builder = builder.with_adapters(progress)
    if executor == "ray":
        from hamilton.plugins.h_ray import RayGraphAdapter

        builder = builder.with_adapters(RayGraphAdapter(result_builder=base.DictResult()))
    if cache:
        cache_dir = workspace.path("cache")  # Hamilton's cache is local (a remote home: a local folder)
        builder = builder.with_cache(
            path=str(cache_dir),
            result_store=ValidatingResultStore(str(cache_dir / "results")),
            ignore=["workspace"],  # run id and execution settings never change a result
            recompute=[f"{s}_files" for s in dag.SOURCE_NAMES],  # always re-list input files
        )
    return builder.build()


def stage_inputs(loaded: LoadedWorkflow, workspace: Workspace) -> dict[str, Any]:
    config, base_dir = loaded.config, loaded.base_dir
    specs = {
        f"{name}_spec": dataclasses.asdict(config.ingest.sources[name].resolved(base_dir))
        if name in config.ingest.sources else None
        for name in dag.SOURCE_NAMES
    }
    settings = stage_settings(config)
    if settings["split"]["exclude"] and not is_remote(settings["split"]["exclude"]):
        settings["split"]["exclude"] = str((base_dir / settings["split"]["exclude"]).resolve())
    init = (settings["train"] or {}).get("init") or {}  # continued pretraining: weights to start from
    if any(init.get(key) for key in ("hf", "checkpoint")):
        settings["train"] = {**settings["train"], "init": {
            key: str((base_dir / value).resolve()) if value else value for key, value in init.items()}}
    return specs | {
        **{f"{stage}_settings": settings[stage] for stage in dag.DATASET_STAGES}, "train_settings": settings["train"],
        "hf_export": settings["hf_export"], "eval_settings": settings["eval"], "report_enabled": settings["report"],
        "dataset_name": config.name, "code_version": code_version(), "workspace": workspace,
        "tokenizer_dir": resolve_tokenizer(config.tokenizer, base_dir, workspace.path()),
    }


def make_workspace(loaded: LoadedWorkflow, workflow: str, ray_address: str | None, dry_run: bool) -> Workspace:
    config = loaded.config
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    return Workspace(
        home=config.home if is_remote(config.home) else str(Path(config.home).resolve()),
        run_id=run_id, workflow=workflow, config_sha256=loaded.sha256,
        base_dir=str(loaded.base_dir), ray_address=ray_address or config.ray_address, workers=config.ingest.workers,
        chunk_items=config.ingest.chunk_items, tokenizer_engine=config.ingest.tokenizer_engine, dry_run=dry_run,
        fail_stage=os.environ.get(FAIL_ENV) or None,
    )


def stages_for(dr: driver.Driver, targets: list[str]) -> list[str]:
    upstream = {v.name for v in dr.what_is_upstream_of(*targets)}
    return [s for s in STAGES if s in upstream or s in targets] + [t for t in targets if t not in STAGES]


def plan(loaded: LoadedWorkflow, workspace: Workspace) -> dict[str, str]:
    """What a run would do: stages only look for their content-addressed outputs (no cache, no work)."""
    dr = build_driver(dataclasses.replace(workspace, dry_run=True), cache=False)
    stages = stages_for(dr, loaded.config.targets)
    inputs = stage_inputs(loaded, dataclasses.replace(workspace, dry_run=True))
    results = dr.execute(stages, inputs=inputs)
    return {s: ("skip" if results[s] is None else "run" if _planned(results[s]) else "done") for s in stages}


def _planned(value: Any) -> bool:
    return isinstance(value, Planned) or (isinstance(value, list) and any(isinstance(v, Planned) for v in value))


def run_workflow(
    workflow: str, overrides: list[str] | None = None, *, ray_address: str | None = None, dry_run: bool = False
) -> RunOutcome:
    loaded = load_workflow(workflow, overrides)
    workspace = make_workspace(loaded, workflow, ray_address, dry_run)
    steps = plan(loaded, workspace)
    if dry_run:
        return RunOutcome(None, steps)
    record = RunRecord(workspace.run_id, workflow, loaded.raw, loaded.sha256, str(workspace.path("runs")))
    record.save()
    needs_ray = loaded.config.executor == "ray" or any(
        steps.get(s) == "run" for s in STAGES
        if s.endswith("_shards") or (s in dag.DATASET_STAGES and dag.DATASET_STAGES[s].resources.uses_ray)
    )
    from pipeline.ray_runtime import ray_session
    from workflows.progress import StageProgress

    progress = StageProgress([s for s, step in steps.items() if step != "skip"], workspace.executed)
    try:
        with ray_session(workspace.ray_address) if needs_ray else nullcontext():
            on_ray = loaded.config.executor == "ray"  # hooks would run in Ray tasks: see report_finished
            dr = build_driver(workspace, executor=loaded.config.executor, progress=None if on_ray else progress)
            stages = stages_for(dr, loaded.config.targets)
            results = dr.execute(stages, inputs=stage_inputs(loaded, workspace))
            if on_ray:
                progress.report_finished({s: results[s] for s in stages if s in progress.stages})
        executed = set(workspace.executed())
    except BaseException as exc:
        record.status, record.error, record.finished = "failed", f"{type(exc).__name__}: {exc}", now()
        record.stages = {s: {"executed": True} for s in workspace.executed()}
        record.save()
        raise
    finally:
        progress.close()
    record.stages = {s: {"output": describe(results[s]), "executed": s in executed} for s in stages}
    record.status, record.finished = "succeeded", now()
    record.save()
    return RunOutcome(record, steps, results, sorted(executed))
