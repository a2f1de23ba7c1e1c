"""Typed training configuration: one dataclass per concern, loaded from YAML with strict keys.

A run is described by ``TrainConfig``; every setting has one place (``model.*``, ``parallel.*``,
``optimizer.*``, ``data.*``, ``checkpoint.*``, ``init.*``, ``logging.*``, ``launch.*``). ``model`` starts from a
preset (``model: {preset: 1b}``) and may override any of its fields. Unknown keys and values of the
wrong type fail with the dotted key in the message.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.options import ConfigError as OptionsConfigError
from pipeline.options import deep_merge, from_mapping, parse_assignments
from training.errors import TrainingError
from training.presets import ModelConfig, model_preset

# How the model's layers are built (training.model.Runtime.detect): auto picks from the installed packages.
TRANSFORMER_IMPLS = ("auto", "transformer_engine", "sdpa", "local")


class ConfigError(TrainingError, OptionsConfigError):
    """A configuration key is unknown, has the wrong type, or values are inconsistent."""


@dataclass
class ParallelConfig:
    tensor: int = 1
    pipeline: int = 1
    data: int = 1
    # None: on exactly when it can work (CUDA, Transformer Engine's norms, tensor > 1).
    sequence_parallel: bool | None = None
    distributed_optimizer: bool = True

    @property
    def world_size(self) -> int:
        return self.tensor * self.pipeline * self.data


@dataclass
class OptimizerConfig:
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 100
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    clip_grad: float = 1.0


@dataclass
class DataConfig:
    blend: str = ""  # the dataset stage's blend JSON
    seq_length: int = 2048
    micro_batch_size: int = 1
    global_batch_size: int = 8
    seed: int = 1234  # GPTDataset shuffle seed: fixes the data order, also across resumes


@dataclass
class CheckpointConfig:
    dir: str | None = None  # default: <run_dir>/checkpoints
    interval: int = 1000  # steps; the final step is always saved
    format: str = "torch_dist"
    resume: bool = True  # continue from the latest checkpoint in ``dir`` when there is one
    # Start from this checkpoint (a root or an iter_* directory) when ``dir`` has none to resume;
    # it may come from a different TP/PP/DP layout.
    load: str | None = None
    # The distributed optimizer's state: fully_reshardable (any TP/PP/DP later; gathered on DP rank 0
    # of each TP x PP shard) or dp_reshardable (no gather, fastest; only the DP size may change).
    optimizer_format: str = "fully_reshardable"
    async_save: bool = False  # write in a background process while training continues


@dataclass
class InitConfig:
    """Continued pretraining: the weights a run starts from at step 0, with a fresh optimizer and
    learning-rate schedule (unlike ``checkpoint.load``, which continues a run's optimizer and step).
    Used only when ``checkpoint.dir`` has no checkpoint of the run's own to resume: resume wins. At
    most one of the two; the model shape and the tokenizer must be the blend's (checked before start).
    """

    # A local transformers LlamaForCausalLM/Qwen3ForCausalLM directory, imported (``logos import hf``
    # with the blend's tokenizer) into ``<run_dir>/init/`` before the run starts.
    hf: str | None = None
    # A Megatron checkpoint (root or iter_* directory): an earlier import, or another run's weights.
    checkpoint: str | None = None


@dataclass
class LoggingConfig:
    interval: int = 1  # steps between metrics lines
    eval_interval: int = 0  # steps between per-domain validation; 0: only after the last step
    eval_iters: int = 1  # global batches per validation domain
    peak_tflops: float | None = None  # per device, for MFU; None: looked up for known GPUs


@dataclass
class LaunchConfig:
    backend: str = "local"  # local (torchrun-style processes) or ray (Ray Train TorchTrainer)
    ray_address: str | None = None  # None: start a local Ray instance
    master_port: int = 0  # 0: pick a free port
    # Ray: GPU workers (one GPU each) or CPU workers; None: GPUs when the cluster has any (or bf16 asks).
    use_gpu: bool | None = None
    cpus_per_worker: float = 1.0  # Ray: CPUs reserved per rank (data loading, the checkpoint writer)


@dataclass
class TrainConfig:
    run_dir: str = "runs/default"
    train_steps: int = 100
    # End this launch after this step (with a checkpoint) although the schedule runs to train_steps, as
    # Megatron-LM's --exit-interval: preemptible jobs, and the resume checks. None: run to the end.
    stop_at_step: int | None = None
    seed: int = 1234
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU), bf16 (needs a GPU on every rank), fp32
    # auto: Transformer Engine when it imports on a GPU, else the SDPA attention path on a GPU, local on
    # CPU; or one of transformer_engine, sdpa, local (megatron's DotProductAttention) explicitly.
    transformer_impl: str = "auto"
    model: ModelConfig = field(default_factory=ModelConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    init: InitConfig = field(default_factory=InitConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.checkpoint.dir) if self.checkpoint.dir else Path(self.run_dir) / "checkpoints"

    @property
    def init_dir(self) -> Path | None:
        """The checkpoint ``init`` starts from (``<run_dir>/init`` where ``init.hf`` is imported), or None."""
        if self.init.hf:
            return Path(self.run_dir) / "init"
        return Path(self.init.checkpoint) if self.init.checkpoint else None

    @property
    def metrics_path(self) -> Path:
        return Path(self.run_dir) / "metrics.jsonl"

    @property
    def num_microbatches(self) -> int:
        return self.data.global_batch_size // (self.data.micro_batch_size * self.parallel.data)


def validate(config: TrainConfig) -> TrainConfig:
    """Check cross-field constraints; raises ``ConfigError`` naming the keys involved."""
    p, m, d = config.parallel, config.model, config.data
    checks = [
        (min(p.tensor, p.pipeline, p.data) >= 1, "parallel.tensor/pipeline/data must be >= 1"),
        (m.num_query_groups % p.tensor == 0,
         f"model.num_query_groups ({m.num_query_groups}) must be divisible by parallel.tensor ({p.tensor})"),
        (m.num_layers % p.pipeline == 0,
         f"model.num_layers ({m.num_layers}) must be divisible by parallel.pipeline ({p.pipeline})"),
        (m.make_vocab_size_divisible_by % p.tensor == 0,
         f"model.make_vocab_size_divisible_by ({m.make_vocab_size_divisible_by}) must be divisible by "
         f"parallel.tensor ({p.tensor})"),
        (d.global_batch_size % (d.micro_batch_size * p.data) == 0,
         f"data.global_batch_size ({d.global_batch_size}) must be a multiple of data.micro_batch_size "
         f"({d.micro_batch_size}) x parallel.data ({p.data})"),
        (d.seq_length > 0 and d.micro_batch_size > 0, "data.seq_length and data.micro_batch_size must be > 0"),
        (config.train_steps >= 0, "train_steps must be >= 0"),
        (config.stop_at_step is None or config.stop_at_step >= 1, "stop_at_step must be >= 1 (or null)"),
        (config.precision in ("auto", "bf16", "fp32"),
         f"precision must be auto, bf16 or fp32, not {config.precision!r}"),
        (config.transformer_impl in TRANSFORMER_IMPLS,
         f"transformer_impl must be one of {', '.join(TRANSFORMER_IMPLS)}, not {config.transformer_impl!r}"),
        (config.launch.backend in ("local", "ray"),
         f"launch.backend must be local or ray, not {config.launch.backend!r}"),
        (config.checkpoint.format == "torch_dist", "checkpoint.format: only torch_dist is supported"),
        (config.checkpoint.interval > 0, "checkpoint.interval must be > 0"),
        (config.launch.cpus_per_worker > 0, "launch.cpus_per_worker must be > 0"),
        (config.checkpoint.optimizer_format in ("fully_reshardable", "dp_reshardable"),
         f"checkpoint.optimizer_format must be fully_reshardable or dp_reshardable, "
         f"not {config.checkpoint.optimizer_format!r}"),
        (config.logging.interval > 0 and config.logging.eval_iters > 0,
         "logging.interval and logging.eval_iters must be > 0"),
        (0 <= config.optimizer.min_lr <= config.optimizer.lr, "optimizer.min_lr must be in [0, optimizer.lr]"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if not d.blend:
        raise ConfigError("data.blend is required: the path of the dataset stage's blend JSON")
    if config.init.hf and config.init.checkpoint:
        raise ConfigError("init: give hf or checkpoint, not both")
    if (config.init.hf or config.init.checkpoint) and config.checkpoint.load:
        raise ConfigError("init and checkpoint.load both name a starting point: init starts at step 0 with a "
                          "fresh optimizer, checkpoint.load continues another run's optimizer and step; keep one")
    return config


# --- building the config from plain data (pipeline.options does the typing and key checks) ----------


def _typed(cls: type, data: Any, key: str) -> Any:
    try:
        return from_mapping(cls, data, path=key)
    except OptionsConfigError as exc:
        raise ConfigError(str(exc)) from None


def _model(data: Any) -> ModelConfig:
    """``model: {preset: 1b, num_layers: 2}``: the preset's shape, then the fields given."""
    if isinstance(data, ModelConfig):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"model: expected a mapping, got {type(data).__name__}")
    fields = dict(data)
    preset = fields.pop("preset", None)
    if preset is not None:
        try:
            fields = dataclasses.asdict(model_preset(str(preset))) | fields
        except ValueError as exc:
            raise ConfigError(f"model.preset: {exc}") from None
    return _typed(ModelConfig, fields, "model")


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a mapping, got {type(data).__name__}")
    data = dict(data)
    if "model" in data:
        data["model"] = _model(data["model"])
    return validate(_typed(TrainConfig, data, ""))


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` strings (values read as YAML) to a plain config mapping."""
    try:
        return deep_merge(data, parse_assignments(overrides, yaml_values=True))
    except OptionsConfigError as exc:
        raise ConfigError(str(exc)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (``yaml.safe_load``), apply ``key=value`` overrides, build and validate it."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        data = loaded or {}
    data = apply_overrides(data, overrides or [])
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path else str(exc)) from None
