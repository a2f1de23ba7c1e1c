"""The dataset stages, declared once: ``dedup``, ``split``, ``mix``, ``export``.

A ``DatasetStage`` names itself (the one name of its module function calls, DAG node, CLI verb, manifest
``stage`` and workflow target), its typed config dataclass (the workflow section of the same name, validated
by ``pipeline.options.from_mapping``), what it reads (``upstream``: the DAG node feeding it) and writes
(``outputs``: the store tables and files it adds), its ``resources`` and its ``compute``. ``REGISTRY`` holds
them in pipeline order; the workflow DAG (``workflows.dag``), the ``logos`` subcommands
(``pipeline.dataset_cli``) and the workflow targets (``workflows.config.TARGETS``) are generated from it,
so adding a stage is adding one entry here.

The content-addressed store is the only memo of finished work: ``DatasetStage.run`` resolves the version id
from inputs and config first (``pipeline.versions.stage.run_stage``) and returns the registered version
when it exists. A stage stores only what it adds: split writes ``assignments`` (``content_id, group,
split``) next to a reference to its input's records table, mix and export reference the same tables;
``DatasetStore.scan`` joins them back into records.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from grammar.formats import DOMAINS
from pipeline.dedup import (
    ExactDedupConfig,
    StreamingConfig,
    empty_duplicates,
    exact_dedup,
    exact_dedup_files,
    read_batches,
)
from pipeline.export_megatron import BLEND_FILE, ExportConfig, export_megatron
from pipeline.mix import MixConfig, Mixture, mix
from pipeline.near_dedup import NearDedupConfig, near_dedup
from pipeline.records import SHARD_SCHEMA, conform_shard_batch, conform_shard_frame
from pipeline.split import SplitConfig, assign_splits, read_exclusions, resolved_method
from pipeline.versions import DatasetStore, Manifest, TableRef
from pipeline.versions.stage import (
    Inputs,
    StageOutput,
    StageRun,
    inherited_counts,
    record_counts,
    run_stage,
    semantic_config,
    stage_tokenizer,
)

NATURAL_MIX = MixConfig(temperature=1.0)  # export of an unmixed input: every domain in its own proportion
SPLIT_TABLES = ("records", "assignments")  # what a split version's records are read from (store.scan joins)


@dataclass(frozen=True)
class DedupSettings:
    """Exact dedup, then near dedup of what is left (``near: null``: exact only)."""

    exact: ExactDedupConfig = field(default_factory=ExactDedupConfig)
    near: NearDedupConfig | None = field(default_factory=NearDedupConfig)
    # Exact dedup in passes over the input files with flat memory (``exact_dedup_files``); the same records.
    streaming: StreamingConfig | None = field(default=None, metadata={"execution": True})

    def __post_init__(self) -> None:
        check_domains("near.domains", self.near.domains if self.near is not None else None)


@dataclass(frozen=True)
class SplitSettings:
    """Group-wise split, and decontamination: entries removed from train with their groups."""

    config: SplitConfig = field(default_factory=SplitConfig)
    exclude: str | None = None  # a file of exclusion entries (``pipeline.split.read_exclusions``)
    exclusions: tuple[str, ...] = ()  # entries given directly (added to the file's)

    def __post_init__(self) -> None:
        check_domains("config.time_split.domains", self.config.time_split.domains if self.config.time_split else None)


def check_domains(key: str, domains: Sequence[str] | None) -> None:
    """A domain list names known domains: a typo would otherwise select nothing, silently."""
    unknown = sorted(set(domains or ()) - set(DOMAINS))
    if unknown:
        raise ValueError(f"{key}: {unknown[0]!r} is not a domain (known: {', '.join(DOMAINS)})")


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
    """A dataset stage: one name, one typed config, one compute; DAG node, CLI verb and target derive from it."""

    name: str
    summary: str  # one line: the CLI help and the DAG node's docstring
    config: type  # its config dataclass; the workflow section ``<name>:`` is one of these
    upstream: str  # the DAG node it reads: "ingested" (every source's shards) or the previous stage
    outputs: tuple[str, ...]  # store tables and files it adds (records it only references are not listed)
    compute: Callable[[Any, Inputs, str, str, DatasetStore], StageOutput]  # config, inputs, name, version
    identity: Callable[[Any], dict[str, Any]]  # the config as it makes the version id (no execution fields)
    flags: tuple[Flag, ...] = ()
    many_inputs: bool = False  # dedup merges several inputs; the others read one dataset
    command: tuple[str, ...] = ()  # CLI words when not just (name,): export is `logos export megatron`
    prepare: Callable[[Any], Any] = lambda config: config  # resolve what depends on the machine ("auto")
    describe: Callable[[Manifest, DatasetStore], str] | None = None  # an extra stderr line after the run
    resources: Resources = Resources()

    def run(self, store: DatasetStore, inputs: Sequence[str], name: str, config: Any = None,
            run: dict[str, Any] | None = None, on_compute: Callable[[], None] | None = None) -> StageRun:
        """The version of ``name`` made by this stage from ``inputs`` and ``config``: found, or computed and
        registered (``on_compute`` is called first, only when it is computed)."""
        config = self.prepare(self.config() if config is None else config)
        if not self.many_inputs and len(inputs) != 1:
            raise ValueError(f"{self.name} takes exactly one input, got {len(inputs)}: {list(inputs)}")

        def compute(loaded: Inputs, version: str, store: DatasetStore) -> StageOutput:
            return self.compute(config, loaded, name, version, store)

        return run_stage(store, name, self.name, inputs, self.identity(config), compute, run, on_compute)


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


# --- dedup ---------------------------------------------------------------------------------------------------


def dedup_compute(config: DedupSettings, loaded: Inputs, name: str, version: str, store: DatasetStore) -> StageOutput:
    """Kept records, duplicates and rejects tables. Streaming writes the records to Delta as they stream
    (only the near-dedup domains are loaded): the same records, in input order rather than sorted."""
    if config.streaming is None:
        kept, duplicates = dedup_in_memory(loaded, config.exact, config.near)
        records: pl.DataFrame | TableRef = kept
    else:
        records, duplicates = dedup_streaming(store, name, version, loaded, config)
        kept = store.scan_ref(records)
    tables: dict[str, Any] = {"records": records, "duplicates": duplicates}
    if loaded.rejects is not None:
        tables["rejects"] = loaded.rejects.collect()
    lineage = inherited_counts(loaded)
    found = {reason: int(n) for reason, n in duplicates["reason"].value_counts().iter_rows()}
    duplicates_count = {r: lineage["duplicates"].get(r, 0) + found.get(r, 0) for r in ("exact", "near")}
    counts = record_counts(kept) | {"rejects": lineage["rejects"], "duplicates": duplicates_count}
    return StageOutput(tables, counts)


def dedup_in_memory(
    loaded: Inputs, exact: ExactDedupConfig, near: NearDedupConfig | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    exact_result = exact_dedup(exact, loaded.records.collect())
    if near is None:
        return exact_result.kept, exact_result.duplicates
    near_result = run_near(near, exact_result.kept)
    return near_result.kept, pl.concat([exact_result.duplicates, near_result.duplicates])


def dedup_streaming(store: DatasetStore, name: str, version: str, loaded: Inputs, config: DedupSettings,
                    ) -> tuple[TableRef, pl.DataFrame]:
    near, streaming = config.near, typing.cast(StreamingConfig, config.streaming)
    work = store.staging_dir(name, version)
    try:
        result = exact_dedup_files(config.exact, loaded.files, work, streaming)
        near_duplicates = empty_duplicates()
        if near is not None:
            kept = conform_shard_frame(pl.scan_parquet([str(p) for p in result.kept_files], missing_columns="insert"))
            subset = kept if near.domains is None else kept.filter(pl.col("domain").is_in(near.domains))
            near_duplicates = run_near(near, subset.collect()).duplicates
        dropped = pa.array(near_duplicates["content_id"].to_list(), pa.string())
        batches = (
            without(conform_shard_batch(batch), dropped)
            for path in result.kept_files
            for batch in read_batches(str(path), streaming.batch_rows)
        )
        records = store.write_table(name, "records", pa.RecordBatchReader.from_batches(SHARD_SCHEMA, batches))
        exact_duplicates = pl.read_parquet(result.duplicates_file).drop("_file", "_row")
        return records, pl.concat([exact_duplicates, near_duplicates])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def without(batch: pa.RecordBatch, content_ids: pa.Array) -> pa.RecordBatch:
    return batch.filter(pc.invert(pc.is_in(batch["content_id"], content_ids)))


def run_near(config: NearDedupConfig, records: pl.DataFrame):
    if not config.use_ray:
        return near_dedup(config, records)
    from pipeline.ray_runtime import ray_session

    with ray_session():
        return near_dedup(config, records)


def dedup_identity(config: DedupSettings) -> dict[str, Any]:
    return {"exact": semantic_config(config.exact), "near": semantic_config(config.near) if config.near else None}


# --- split ---------------------------------------------------------------------------------------------------


def split_prepare(settings: SplitSettings) -> SplitSettings:
    """Protein clustering "auto" becomes the method that runs here (so the version says which), and the
    exclusion file's entries join the direct ones (so the version depends on the entries, not the path)."""
    entries = list(settings.exclusions)
    if settings.exclude is not None:
        entries += read_exclusions(Path(settings.exclude).read_text().splitlines())
    return SplitSettings(resolved_method(settings.config), None, tuple(entries))


def split_compute(settings: SplitSettings, loaded: Inputs, name: str, version: str, store: DatasetStore) -> StageOutput:
    """Assignments (``content_id, group, split``) over the input's records table, which is referenced, not
    copied; records removed by decontamination go to ``excluded`` (``content_id, group``).

    One row per ``content_id``: records with the same content share their group, hence their split."""
    records = loaded.records.collect()
    if settings.config.use_ray:
        from pipeline.ray_runtime import ray_session

        with ray_session():
            result = assign_splits(settings.config, records, settings.exclusions)
    else:
        result = assign_splits(settings.config, records, settings.exclusions)
    counts = record_counts(result.records) | inherited_counts(loaded)
    counts["excluded"] = result.excluded.height
    assignments = result.records.select("content_id", "group", "split").unique("content_id", maintain_order=True)
    excluded = result.excluded.select("content_id", "group").unique("content_id", maintain_order=True)
    base = records_table(loaded)
    if base is None:  # shards given directly: the records are stored once, here
        base = records.drop([c for c in ("group", "split") if c in records.columns])
    return StageOutput({"records": base, "assignments": assignments, "excluded": excluded}, counts)


def records_table(loaded: Inputs) -> TableRef | None:
    """The stored records table of the one dataset input (without any split columns), if it is one."""
    if len(loaded.manifests) == 1 and len(loaded.refs) == 1:
        return loaded.manifests[0].tables["records"]
    return None


def split_identity(settings: SplitSettings) -> dict[str, Any]:
    digest = hashlib.sha256("\n".join(sorted(settings.exclusions)).encode()).hexdigest()
    return semantic_config(settings.config) | {"exclude": {"entries": len(settings.exclusions), "sha256": digest}}


def time_split(text: str) -> dict[str, Any]:
    valid_from, sep, test_from = text.partition(":")
    if not sep:
        raise ValueError(f"--time-split: expected VALID_FROM:TEST_FROM, got {text!r}")
    return {"config": {"time_split": {"valid_from": valid_from, "test_from": test_from}}}


# --- mix and export ------------------------------------------------------------------------------------------


def token_counts(
    records: pl.LazyFrame, specials: int = 1
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Tokens as exported (``specials`` per document: the tokenizer's prefix and the EOD) and documents
    per split and domain."""
    grouped = records.group_by("split", "domain").agg(docs=pl.len(),
                                                      tokens=pl.col("n_tokens").sum() + specials * pl.len())
    tokens: dict[str, dict[str, int]] = {}
    documents: dict[str, dict[str, int]] = {}
    for split, domain, docs, n in grouped.collect().iter_rows():
        tokens.setdefault(split, {})[domain] = int(n)
        documents.setdefault(split, {})[domain] = int(docs)
    return tokens, documents


def only_dataset(loaded: Inputs, stage: str) -> Manifest:
    if len(loaded.manifests) != 1 or len(loaded.refs) != 1:
        labels = [r.label() for r in loaded.refs]
        raise ValueError(f"{stage} takes exactly one registered dataset as input, got {labels}")
    manifest = loaded.manifests[0]
    if "split" not in loaded.records.collect_schema().names():
        raise ValueError(f"{stage} needs a split dataset; {manifest.ref} has no split column (run `logos split`)")
    return manifest


def shared_tables(source: Manifest) -> dict[str, pl.DataFrame | TableRef]:
    """The input's record tables, referenced (a stage that adds no records copies none)."""
    return {table: source.tables[table] for table in SPLIT_TABLES if table in source.tables}


def mix_compute(config: MixConfig, loaded: Inputs, name: str, version: str, store: DatasetStore) -> StageOutput:
    """Mixture weights for a split dataset; the records are the input's."""
    source = only_dataset(loaded, "mix")
    specials = len(stage_tokenizer(store, loaded).prefix_ids) + 1
    mixture = mix(config, *token_counts(store.scan(source), specials))
    return StageOutput(shared_tables(source), source.counts, {"mixture": mixture.as_dict()})


def export_compute(config: ExportConfig, loaded: Inputs, name: str, version: str, store: DatasetStore) -> StageOutput:
    """``.bin/.idx`` per (split, domain) and a blend; weights from the input's mixture (natural if none).

    The documents are written with the input's tokenizer (its prefix and EOD), which is saved next to the
    blend; int32 when its vocabulary does not fit uint16."""
    source = only_dataset(loaded, "export")
    records = store.scan(source)
    tokenizer = stage_tokenizer(store, loaded)
    specials = len(tokenizer.prefix_ids) + 1
    mixture = source.outputs.get("mixture") or mix(NATURAL_MIX, *token_counts(records, specials)).as_dict()
    weights: dict[str, dict[str, float]] = {}
    for share in mixture["shares"]:
        weights.setdefault(share["split"], {})[share["domain"]] = share["weight"]
    staging = store.staging_dir(name, version)
    result = export_megatron(config, records, weights, staging, tokenizer, {"name": name, "version": version})
    blend = store.files_path(name, version, BLEND_FILE)
    outputs = {"blend": str(blend), "mixture": mixture, "documents": result.documents, "tokens": result.tokens}
    return StageOutput(shared_tables(source), source.counts, outputs, staging)


def mixture_table(manifest: Manifest, store: DatasetStore) -> str:
    return Mixture.from_dict(manifest.outputs["mixture"]).table()


def blend_line(manifest: Manifest, store: DatasetStore) -> str:
    return f"blend: {store.uri(manifest.outputs['blend'])}"


# --- the registry --------------------------------------------------------------------------------------------

REGISTRY: dict[str, DatasetStage] = {stage.name: stage for stage in (
    DatasetStage(
        name="dedup", summary="exact + near-duplicate removal -> a new dataset version",
        config=DedupSettings, upstream="ingested", outputs=("records", "duplicates", "rejects"),
        compute=dedup_compute, identity=dedup_identity, many_inputs=True, resources=Resources(uses_ray=True),
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
            Flag("--no-near", switch=True, to_config=lambda v: {"near": None}, help="exact dedup only"),
        ),
    ),
    DatasetStage(
        name="split", summary="leakage-free train/valid/test split -> a new dataset version",
        config=SplitSettings, upstream="dedup", outputs=("assignments", "excluded"),
        compute=split_compute, identity=split_identity, prepare=split_prepare, resources=Resources(uses_ray=False),
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
        ),
    ),
    DatasetStage(
        name="mix", summary="domain mixture weights and report -> a new dataset version",
        config=MixConfig, upstream="split", outputs=("mixture",), compute=mix_compute,
        identity=semantic_config, describe=mixture_table,
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
        config=ExportConfig, upstream="mix", outputs=("blend", ".bin/.idx files", "tokenizer"),
        compute=export_compute, identity=semantic_config, command=("export", "megatron"), describe=blend_line,
        flags=(
            Flag("--docs-per-shard", "docs_per_shard", help="documents per .bin/.idx shard"),
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

