"""The dataset stages, declared once: ``dedup``, ``split``, ``mix``, ``export``.

A ``DatasetStage`` names itself (the one name of its module, DAG node, CLI verb, manifest ``stage`` and
workflow target), what it reads (``upstream``: the DAG node feeding it) and adds to the store (``outputs``),
its ``resources`` and its CLI flags; its module ``pipeline/stages/<name>.py`` holds its typed config
dataclass (``CONFIG``: the workflow section of the same name, validated by ``pipeline.options.from_mapping``)
and its ``compute``. ``REGISTRY`` holds the stages in pipeline order; the workflow DAG (``workflows.dag``),
the ``logos`` subcommands (``pipeline.dataset_cli``) and the workflow targets (``workflows.config.TARGETS``)
are generated from it, so adding a stage is adding one entry here and one module.

This module stays light (``logos`` builds its parser from it at every start: the stage modules import RDKit,
pymatgen, polars and Ray, ~1 s); a stage's module loads when the stage runs or its ``--help`` prints.

The content-addressed store is the only memo of finished work: ``DatasetStage.run`` resolves the version id
from inputs and config first (``pipeline.versions.stage.run_stage``) and returns the registered version when
it exists. A stage stores only what it adds: split writes ``assignments`` (``content_id, group, split``) next
to a reference to its input's records table, mix and export reference the same tables; ``DatasetStore.scan``
joins them back into records.
"""
from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.versions import DatasetStore, Manifest
    from pipeline.versions.stage import Inputs, StageOutput, StageRun


@dataclass(frozen=True)
class Resources:
    """What a stage asks of the machine that runs its DAG node: it orchestrates, so no CPU of its own
    (``num_cpus``), and whether its compute may start Ray (the workflow then starts one session for all)."""

    num_cpus: float = 0.0
    uses_ray: bool = False


@dataclass(frozen=True)
class Flag:
    """One CLI option of a stage and where its value lands in the stage's config mapping.

    ``path`` is the dotted config key it sets (typed and checked by ``from_mapping`` like the workflow's YAML,
    its default and choices shown from the dataclass); ``to_config`` instead maps the raw value to a
    partial mapping, for options that do not map one to one (``--time-split 2012:2015``).
    """

    option: str
    path: str | None = None
    help: str = ""
    switch: bool = False  # store_true: sets ``path`` to True (or applies ``to_config(True)``)
    to_config: Callable[[Any], dict[str, Any]] | None = None
    metavar: str | None = None

    def mapping(self, raw: Any) -> dict[str, Any]:
        if self.to_config is not None:
            return self.to_config(raw)
        return nested(typing.cast(str, self.path), raw)


@dataclass(frozen=True)
class DatasetStage:
    """A dataset stage: one name; its config and compute in ``pipeline.stages.<name>``; DAG node, CLI verb and
    target derive from it."""

    name: str
    summary: str  # one line: the CLI help and the DAG node's docstring
    upstream: str  # the DAG node it reads: "ingested" (every source's shards) or the previous stage
    outputs: tuple[str, ...]  # store tables and files it adds (records it only references are not listed)
    flags: tuple[Flag, ...] = ()
    many_inputs: bool = False  # dedup merges several inputs; the others read one dataset
    command: tuple[str, ...] = ()  # CLI words when not just (name,): export is `logos export megatron`
    resources: Resources = Resources()

    @property
    def module(self) -> Any:
        """``pipeline.stages.<name>``: ``CONFIG``, ``compute(config, inputs, name, version, store)``,
        ``identity(config)`` (the config as it makes the version id), optionally ``prepare(config)`` (resolve
        what depends on the machine) and ``describe(manifest, store)`` (an extra line after a CLI run)."""
        return importlib.import_module(f"{__name__}.{self.name}")

    @property
    def config(self) -> type:
        """The stage's config dataclass; the workflow section ``<name>:`` is one of these."""
        return self.module.CONFIG

    def describe(self, manifest: Manifest, store: DatasetStore) -> str | None:
        describe = getattr(self.module, "describe", None)
        return describe(manifest, store) if describe is not None else None

    def run(self, store: DatasetStore, inputs: Sequence[str], name: str, config: Any = None,
            run: dict[str, Any] | None = None, on_compute: Callable[[], None] | None = None) -> StageRun:
        """The version of ``name`` made by this stage from ``inputs`` and ``config``: found, or computed and
        registered (``on_compute`` is called first, only when it is computed)."""
        from pipeline.versions.stage import run_stage

        module = self.module
        prepare = getattr(module, "prepare", None)
        config = self.config() if config is None else config
        config = prepare(config) if prepare is not None else config
        if not self.many_inputs and len(inputs) != 1:
            raise ValueError(f"{self.name} takes exactly one input, got {len(inputs)}: {list(inputs)}")

        def compute(loaded: Inputs, version: str, store: DatasetStore) -> StageOutput:
            return module.compute(config, loaded, name, version, store)

        return run_stage(store, name, self.name, inputs, module.identity(config), compute, run, on_compute)


def nested(path: str, value: Any) -> dict[str, Any]:
    """``nested("a.b", 1) == {"a": {"b": 1}}``."""
    *parents, leaf = path.split(".")
    mapping: dict[str, Any] = {leaf: value}
    for part in reversed(parents):
        mapping = {part: mapping}
    return mapping


def names(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def pairs(text: str) -> dict[str, str]:
    """``"a=1,b=2"`` -> ``{"a": "1", "b": "2"}`` (values typed by the config)."""
    result = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        result[key.strip()] = value.strip()
    return result


def time_split(text: str) -> dict[str, Any]:
    valid_from, sep, test_from = text.partition(":")
    if not sep:
        raise ValueError(f"--time-split: expected VALID_FROM:TEST_FROM, got {text!r}")
    return {"config": {"time_split": {"valid_from": valid_from, "test_from": test_from}}}


def check_domains(key: str, domains: Sequence[str] | None) -> None:
    """A domain list names known domains: a typo would otherwise select nothing, silently."""
    from grammar.formats import DOMAINS

    unknown = sorted(set(domains or ()) - set(DOMAINS))
    if unknown:
        raise ValueError(f"{key}: {unknown[0]!r} is not a domain (known: {', '.join(DOMAINS)})")


# --- the registry (pipeline order) -----------------------------------------------------------------------

REGISTRY: dict[str, DatasetStage] = {stage.name: stage for stage in (
    DatasetStage(
        name="dedup", summary="exact + near-duplicate removal -> a new dataset version",
        upstream="ingested", outputs=("records", "duplicates", "rejects"),
        many_inputs=True, resources=Resources(uses_ray=True),
        flags=(
            Flag("--source-priority", help="comma-separated sources that win ties, best first",
                 to_config=lambda v: {"exact": {"source_priority": names(v)}, "near": {"source_priority": names(v)}}),
            Flag("--near-threshold", "near.threshold", help="estimated Jaccard of near duplicates"),
            Flag("--num-perm", "near.num_perm", help="MinHash permutations"),
            Flag("--bands", "near.bands", help="LSH bands (num-perm must be a multiple)"),
            Flag("--shingle", "near.shingle", help="token n-gram length"),
            Flag("--near-domains", help="comma-separated domains, or 'all' (default: protein)",
                 to_config=lambda v: {"near": {"domains": None if v == "all" else names(v)}}),
            Flag("--ray", "near.use_ray", switch=True, help="compute MinHash signatures on Ray Data"),
            Flag("--streaming", "streaming", switch=True, to_config=lambda v: {"streaming": {}},
                 help="exact dedup over the files with flat memory"),
            Flag("--bucket-rows", "streaming.bucket_rows",
                 help="streaming: rows per hash bucket (implies --streaming)"),
            Flag("--workers", "streaming.workers",
                 help="streaming: Ray tasks for the passes (implies --streaming; the same records)"),
            Flag("--no-near", switch=True, to_config=lambda v: {"near": None}, help="exact dedup only"),
        ),
    ),
    DatasetStage(
        name="split", summary="leakage-free train/valid/test split -> a new dataset version",
        upstream="dedup", outputs=("assignments", "excluded"),
        resources=Resources(uses_ray=False),
        flags=(
            Flag("--fractions", "config.fractions", help="train,valid,test"),
            Flag("--exclude", "exclude", help="file of benchmark items removed (with their groups) from train"),
            Flag("--protein-clustering", "config.proteins.method", help="auto: mmseqs when on PATH, else minhash"),
            Flag("--min-seq-id", "config.proteins.min_seq_id", help="MMseqs2 --min-seq-id"),
            Flag("--coverage", "config.proteins.coverage", help="MMseqs2 -c"),
            Flag("--time-split", metavar="VALID_FROM:TEST_FROM", to_config=time_split,
                 help="reactions by year, e.g. 2012:2015"),
            Flag("--salt", "config.salt", help="hashed with each group key: another salt, other splits"),
            Flag("--ray", "config.use_ray", switch=True, help="compute group keys (RDKit, parsing) on Ray Data"),
            Flag("--workers", "config.workers", help="Ray tasks deciding partitions (the same splits)"),
        ),
    ),
    DatasetStage(
        name="mix", summary="domain mixture weights and report -> a new dataset version",
        upstream="split", outputs=("mixture",),
        flags=(
            Flag("--weights", help="explicit weights, e.g. molecule=0.6,protein=0.4 (else temperature)",
                 to_config=lambda v: {"weights": pairs(v)}),
            Flag("--temperature", "temperature", help="p_i ∝ n_i^(1/T) (neither: LOGOS's published token shares)"),
            Flag("--max-epochs", "max_epochs", help="cap on epochs per domain and split"),
            Flag("--budget", help="tokens per split, e.g. train=1000000 (default: the split's tokens)",
                 to_config=lambda v: {"budget": pairs(v)}),
        ),
    ),
    DatasetStage(
        name="export", summary=".bin/.idx per split and domain + blend -> a new dataset version",
        upstream="mix", outputs=("blend", ".bin/.idx files", "tokenizer"),
        command=("export", "megatron"),
        flags=(
            Flag("--docs-per-shard", "docs_per_shard", help="documents per partition"),
            Flag("--workers", "workers", help="Ray tasks building partitions (the same bytes)"),
            Flag("--no-verify", switch=True, to_config=lambda v: {"verify": False}, help="skip reading the files back"),
        ),
    ),
)}


def stage(name: str) -> DatasetStage:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"no dataset stage {name!r} (known: {', '.join(REGISTRY)})") from None


def config_default(config: type, path: str) -> Any:
    """The default at a dotted path of a config dataclass (for ``--help``), or None where none is fixed."""
    value: Any = config()
    for part in path.split("."):
        if value is None or not dataclasses.is_dataclass(value):
            return None
        value = getattr(value, part)
    return value


def config_hint(config: type, path: str) -> Any:
    """The type hint at a dotted path of a config dataclass (``Literal`` choices become CLI choices)."""
    hint: Any = config
    for part in path.split("."):
        args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        hint = typing.get_type_hints(args[0])[part]
    return hint


_EXPORTS = {"DedupSettings": "dedup", "SplitSettings": "split", "token_counts": "mix", "NATURAL_MIX": "mix"}


def __getattr__(name: str) -> Any:
    """The stage modules' public names, loaded on first use (``from pipeline.stages import SplitSettings``)."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
