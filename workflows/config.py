"""Workflow configs: YAML (safe-loaded) -> typed dataclasses, with errors that name the key.

A workflow config names the dataset, the sources to ingest and every stage's settings. Stage settings
are the stages' own config dataclasses (``ExactDedupConfig``, ``SplitConfig``, ...), so each setting
has exactly one definition. Relative input paths are relative to the config file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.export_megatron import ExportConfig
from pipeline.mix import MixConfig
from pipeline.options import ConfigError, deep_merge, from_mapping, parse_assignments
from pipeline.sources import SOURCES
from pipeline.stages import REGISTRY as DATASET_STAGES
from pipeline.stages import DedupSettings, SplitSettings
from training.evaluation.run import EvalConfig
from workflows.tokenizer import TokenizerSettings, check_tokenizer

CONFIG_DIR = Path(__file__).parent / "configs"
TARGETS = ("ingested", *DATASET_STAGES, "trained", "hf_model", "evaluated", "report")


@dataclass
class SourceSpec:
    inputs: list[str]  # files, globs, directories or URIs; relative ones are relative to the config file
    options: dict[str, Any] = field(default_factory=dict)  # the source's config; *_path values resolve too

    def resolved(self, base_dir: Path) -> SourceSpec:
        def local(value: Any) -> Any:
            if not isinstance(value, str) or "://" in value or Path(value).is_absolute():
                return value
            return str((base_dir / value).resolve())

        options = {k: local(v) if k.endswith("_path") else v for k, v in self.options.items()}
        return SourceSpec([local(i) for i in self.inputs], options)


@dataclass
class IngestSettings:
    sources: dict[str, SourceSpec] = field(default_factory=dict)
    workers: int | None = None  # execution only: does not change results
    chunk_items: int | None = None
    tokenizer_engine: str = "python"


@dataclass
class WorkflowConfig:
    name: str  # the dataset name every version of this workflow is registered under
    home: str = ".logos"  # datasets, runs, training runs and reports live here
    ray_address: str | None = None  # None: a local Ray
    executor: str = "local"  # local: stages run in this process (and use Ray inside); ray: Hamilton's Ray adapter
    targets: list[str] = field(default_factory=lambda: ["report"])
    tokenizer: TokenizerSettings = field(default_factory=TokenizerSettings)  # the dataset's (workflows.tokenizer)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    # The dataset stages' sections: each is its stage's config dataclass (pipeline.stages.REGISTRY).
    dedup: DedupSettings = field(default_factory=DedupSettings)
    split: SplitSettings = field(default_factory=SplitSettings)
    mix: MixConfig = field(default_factory=MixConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    train: dict[str, Any] | None = None  # a training.config.TrainConfig mapping; data.blend comes from export
    hf_export: bool = True  # when training runs: export a transformers checkpoint
    eval: EvalConfig | None = None  # `logos eval` of the exported model on the test split (None: no eval)
    report: bool = True


@dataclass
class LoadedWorkflow:
    config: WorkflowConfig
    raw: dict[str, Any]  # after overrides: what is recorded with every run
    base_dir: Path  # relative inputs resolve against it

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True, default=str).encode()).hexdigest()


def config_path(workflow: str) -> Path:
    """A bundled workflow by name (``demo``, ``full``) or a YAML file path."""
    # ``full``, ``full.yaml`` (the README's name for it) or workflows/configs/full.yaml from another folder;
    # any other missing path is an error, never a bundled workflow of the same name
    name = Path(workflow).name.removesuffix(".yaml")
    bundled = CONFIG_DIR / f"{name}.yaml"
    bundled_spelling = workflow in (name, f"{name}.yaml") or workflow.endswith(f"workflows/configs/{name}.yaml")
    if bundled.is_file() and bundled_spelling and not Path(workflow).exists():
        return bundled
    path = Path(workflow)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
        raise ConfigError(f"no workflow {workflow!r}: not a bundled workflow ({known}) nor a YAML file")
    return path


def load_workflow(workflow: str, overrides: list[str] | None = None) -> LoadedWorkflow:
    path = config_path(workflow)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    raw = deep_merge(raw, parse_assignments(overrides, yaml_values=True))
    config = from_mapping(WorkflowConfig, raw)
    check(config)
    return LoadedWorkflow(config, raw, path.parent.resolve())


def check(config: WorkflowConfig) -> None:
    """Cross-field checks, each naming its key."""
    from pipeline.sources import config_class

    for name, spec in config.ingest.sources.items():
        if name not in SOURCES:
            raise ConfigError(f"ingest.sources.{name}: unknown source (known: {', '.join(sorted(SOURCES))})")
        from_mapping(config_class(name), spec.options, path=f"ingest.sources.{name}.options")
    if not config.ingest.sources:
        raise ConfigError("ingest.sources: at least one source is needed")
    for target in config.targets:
        if target not in TARGETS:
            raise ConfigError(f"targets: unknown target {target!r} (known: {', '.join(TARGETS)})")
    if config.executor not in ("local", "ray"):
        raise ConfigError(f"executor: must be local or ray, not {config.executor!r}")
    check_tokenizer(config.tokenizer)
    if {"trained", "hf_model", "evaluated"} & set(config.targets) and config.train is None:
        raise ConfigError("targets: training targets need a train section")
    if "evaluated" in config.targets and (config.eval is None or not config.hf_export):
        raise ConfigError("targets: evaluated needs an eval section and hf_export: true")
    if config.train is not None:
        check_train(config.train)


def check_train(train: dict[str, Any]) -> None:
    """Validate the train section with the training stage's own loader (data.blend comes later)."""
    from training.config import ConfigError as TrainConfigError
    from training.config import config_from_dict

    if "data" in train and "blend" in (train["data"] or {}):
        raise ConfigError("train.data.blend: set by the workflow (the export stage's blend), leave it out")
    probe = deep_merge(train, {"data": {"blend": "<from the export stage>"}})
    try:
        config_from_dict(probe)
    except TrainConfigError as exc:
        raise ConfigError(f"train: {exc}") from None


def stage_settings(config: WorkflowConfig) -> dict[str, Any]:
    """Each stage's settings as plain data: what the DAG's cache keys are made of."""
    return {
        "dedup": dataclasses.asdict(config.dedup),
        "split": dataclasses.asdict(config.split),
        "mix": dataclasses.asdict(config.mix),
        "export": dataclasses.asdict(config.export),
        "train": config.train,
        "hf_export": config.hf_export,
        "eval": dataclasses.asdict(config.eval) if config.eval is not None else None,
        "report": config.report,
    }
