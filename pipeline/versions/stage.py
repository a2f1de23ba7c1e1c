"""Running a stage as a dataset version: read inputs, reuse or compute, register.

Inputs are dataset references (``NAME`` or ``NAME@VERSION`` in the store) or URIs of tokenized
shards: an ingest output folder (``records/*.parquet`` and ``rejects/*.parquet``), a folder of Parquet
files, files or globs. A URI input is identified by a checksum of its files' bytes. ``run_stage``
computes the version id from inputs and config before doing any work and returns the existing
version untouched when there is one. Execution-only settings (Ray on/off, batch sizes, threads,
shard size) are left out of the id: they do not change the result.

The tokenizer is the inputs': an ingest folder carries its own (``OUT/tokenizer``, hash in
``summary.json``), a dataset version names it in its manifest (``tokenizer_hash``). All inputs must
share one tokenizer (else a one-line error naming both); the version id and manifest record its hash,
and a copy is kept in the store under ``.tokenizers/<hash>`` (a dataset name cannot start with a dot)
so later stages, and the Megatron export, find it by hash. Bare Parquet inputs and ingest folders
written before tokenizers were recorded are taken to be the built-in native tokenizer's.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import polars as pl

from grammar.tokenizer import TokenizerMismatch, check_same_tokenizer, default_tokenizer
from pipeline.io import (
    GLOB_CHARS,
    expand_inputs,
    is_dir,
    is_file,
    join_uri,
    local_copy,
    object_store_options,
    parquet_column_names,
    read_text,
    uri_sha256,
)
from pipeline.records import SHARD_COLUMN_DEFAULTS, SHARD_SCHEMA, conform_shard_frame
from pipeline.versions.manifest import InputRef, Manifest, TableRef, code_version, version_id
from pipeline.versions.store import DatasetStore

EXECUTION_FIELDS = frozenset({"use_ray", "batch_rows", "threads", "docs_per_shard", "verify", "workers"})
TOKENIZERS_DIR = ".tokenizers"


class InputError(ValueError):
    """An input that is not a dataset in the store nor readable tokenized shards, with why."""


class InputUnreadable(InputError):
    """An input that is there and of the right kind but cannot be read (no access, a storage error, bytes
    that are not Parquet): the world failed, not the command, so the CLI exits 1 (a wrong name, a missing
    path or a foreign schema is a usage error, exit 2)."""


@dataclass
class Inputs:
    refs: list[InputRef]
    records: pl.LazyFrame
    rejects: pl.LazyFrame | None
    manifests: list[Manifest]  # the dataset inputs' manifests (URI inputs have none)
    files: list[str]  # the Parquet files behind ``records`` (for streaming stages)
    tokenizer_hash: str = ""  # the one tokenizer every input's ids came from
    tokenizer_dir: Path | None = None  # a saved copy of it, when an input carries one


@dataclass
class StageOutput:
    tables: dict[str, pl.DataFrame | TableRef]
    counts: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    staged_files: Path | None = None


@dataclass
class StageRun:
    manifest: Manifest | None  # None only when planning found nothing registered yet
    reused: bool  # True when the same inputs and config were already registered
    version: str = ""


_PLANNING: ContextVar[bool] = ContextVar("logos_stage_planning", default=False)


@contextmanager
def planning() -> Iterator[None]:
    """Within this block a stage resolves its version and looks it up, but computes nothing.

    A workflow's dry run uses it to say which stages would run.
    """
    token = _PLANNING.set(True)
    try:
        yield
    finally:
        _PLANNING.reset(token)


def semantic_config(value: Any) -> Any:
    """A config as JSON-able data without execution-only fields (they do not change results): those named in
    ``EXECUTION_FIELDS`` and dataclass fields marked ``metadata={"execution": True}``."""
    if hasattr(value, "__dataclass_fields__"):
        value = {f.name: getattr(value, f.name) for f in fields(value) if not f.metadata.get("execution")}
    if isinstance(value, dict):
        return {k: semantic_config(v) for k, v in value.items() if k not in EXECUTION_FIELDS}
    if isinstance(value, list | tuple):
        return [semantic_config(v) for v in value]
    return value


def stored_tokenizer_dir(store: DatasetStore, content_hash: str) -> Path | None:
    """A local folder of the store's copy of a tokenizer (fetched from a remote store); None if not stored."""
    return store.tokenizer_dir(content_hash)


def ingest_tokenizer(spec: str) -> tuple[str, Path | None]:
    """(content hash, local saved directory) of the tokenizer an ingest folder's ids came from (a local or
    remote folder: a remote one's tokenizer is fetched to the local cache, by its content hash)."""
    summary = join_uri(spec, "summary.json")
    entry = json.loads(read_text(summary)).get("tokenizer") if not GLOB_CHARS & set(spec) and is_file(summary) \
        else None
    if not entry:
        return default_tokenizer().content_hash, None
    directory = join_uri(spec, entry.get("path", "tokenizer"))
    if not is_dir(directory):
        return entry["content_hash"], None
    return entry["content_hash"], local_copy(directory, cache_key=entry["content_hash"])


def stage_tokenizer(store: DatasetStore, inputs: Inputs):
    """The inputs' tokenizer, loaded from the store's copy (the export needs its ids and files)."""
    from grammar.tokenizer import load_tokenizer

    directory = stored_tokenizer_dir(store, inputs.tokenizer_hash)
    if directory is None:
        raise InputError(f"tokenizer {inputs.tokenizer_hash} of {[r.label() for r in inputs.refs]} is not in "
                         f"{store.uri(TOKENIZERS_DIR)} (re-run the stage that read the ingest output)")
    return load_tokenizer(directory)


def keep_tokenizer(store: DatasetStore, inputs: Inputs) -> None:
    """Copy the inputs' tokenizer into the store by hash (once), so later stages find it."""
    if stored_tokenizer_dir(store, inputs.tokenizer_hash) is not None:
        return
    if inputs.tokenizer_dir is not None:
        store.keep_tokenizer(inputs.tokenizer_hash, inputs.tokenizer_dir)
    elif inputs.tokenizer_hash == default_tokenizer().content_hash:
        with tempfile.TemporaryDirectory() as saved:
            default_tokenizer().save(Path(saved) / "tokenizer")
            store.keep_tokenizer(inputs.tokenizer_hash, Path(saved) / "tokenizer")
    else:
        raise InputError(f"tokenizer {inputs.tokenizer_hash} of {[r.label() for r in inputs.refs]} is neither "
                         f"saved with the inputs nor in {store.uri(TOKENIZERS_DIR)}")


def uri_input(spec: str) -> tuple[InputRef, list[str], list[str]]:
    """An ingest output folder, a folder of Parquet shards, files or a glob, local or on object storage
    (read through fsspec): its record and reject files and a checksum of their bytes. Anything unusable is
    one ``InputError`` naming the file: missing (a path, bucket or pattern matching nothing) or not tokenized
    shards, or ``InputUnreadable`` when it is there but cannot be read (no access, not Parquet)."""
    try:
        return _uri_input(spec)
    except InputError:
        raise
    except FileNotFoundError as exc:  # fsspec/s3fs: no such path or bucket; pipeline.io: a pattern matching nothing
        raise InputError(f"{spec}: no shards there ({' '.join(str(exc).split()) or 'not found'})") from None
    except (OSError, ValueError) as exc:  # fsspec/s3fs: PermissionError, storage errors; Arrow: not Parquet
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputUnreadable(f"{spec}: cannot read the shards ({reason})") from None


def _uri_input(spec: str) -> tuple[InputRef, list[str], list[str]]:
    records_dir, rejects_dir = join_uri(spec, "records"), join_uri(spec, "rejects")
    if not GLOB_CHARS & set(spec) and is_dir(records_dir):  # an ingest output folder
        records = expand_inputs([records_dir], (".parquet",))
        rejects = expand_inputs([rejects_dir], (".parquet",)) if is_dir(rejects_dir) else []
    else:
        records, rejects = expand_inputs([spec], (".parquet",)), []
    if not records:
        raise InputError(f"{spec}: no Parquet record shards found")
    digest = hashlib.sha256()
    for path in records + rejects:
        digest.update(f"{path.rstrip('/').rsplit('/', 1)[-1]}\x00{uri_sha256(path)}\n".encode())
    for path in records:
        try:
            columns = parquet_column_names(path)
        except (OSError, ValueError) as exc:
            raise InputUnreadable(f"{path}: not a Parquet shard ({' '.join(str(exc).split())})") from None
        missing = set(SHARD_SCHEMA.names) - set(SHARD_COLUMN_DEFAULTS) - set(columns)
        if missing:
            raise InputError(f"{path}: not a tokenized shard, missing columns {sorted(missing)}")
    return InputRef(uri=str(spec), checksum="sha256:" + digest.hexdigest()), records, rejects


def load_inputs(store: DatasetStore, specs: Sequence[str]) -> Inputs:
    refs, records, rejects, manifests, files = [], [], [], [], []
    tokenizers: list[tuple[str, str, Path | None]] = []  # (input label, hash, saved directory)
    for spec in specs:
        name = spec.partition("@")[0]
        if name in store.names():
            manifest = store.manifest(spec)
            manifests.append(manifest)
            refs.append(InputRef(name=manifest.name, version=manifest.version))
            stored = stored_tokenizer_dir(store, manifest.tokenizer_hash)
            tokenizers.append((manifest.ref, manifest.tokenizer_hash, stored))
            records.append(store.scan(manifest))
            files.extend(store.table_files(manifest))
            if "rejects" in manifest.tables:
                rejects.append(store.scan(manifest, "rejects"))
        elif Path(spec).exists() or "://" in spec or any(c in spec for c in "*?["):
            ref, record_files, reject_files = uri_input(spec)
            refs.append(ref)
            tokenizers.append((spec, *ingest_tokenizer(spec)))
            options = object_store_options(record_files[0])  # object storage: endpoint and http from the env
            records.append(conform_shard_frame(pl.scan_parquet(record_files, missing_columns="insert",
                                                               storage_options=options)))
            rejects.extend([pl.scan_parquet(reject_files, storage_options=options)] if reject_files else [])
            files.extend(record_files)
        else:
            raise InputError(f"{spec!r} is neither a dataset in {store.uri()} nor an existing path or URI")
    if not records:
        raise InputError("no inputs given")
    first_label, first_hash, _ = tokenizers[0]
    for label, content_hash, _ in tokenizers[1:]:
        try:
            check_same_tokenizer(first_hash, content_hash, first=first_label, second=label)
        except TokenizerMismatch as exc:
            raise InputError(f"inputs disagree on the tokenizer: {exc}") from None
    directory = next((d for _, _, d in tokenizers if d is not None), None)
    all_rejects = pl.concat(rejects) if rejects else None
    return Inputs(refs, pl.concat(records, how="diagonal_relaxed"), all_rejects, manifests, files, first_hash,
                  directory)


def record_counts(records: pl.DataFrame | pl.LazyFrame) -> dict[str, dict[str, dict[str, int]]]:
    """Records and tokens per split and domain (split "all" before the split stage)."""
    lazy = records.lazy()
    split = pl.col("split") if "split" in lazy.collect_schema().names() else pl.lit("all")
    grouped = lazy.group_by(split.alias("split"), "domain").agg(n=pl.len(), tokens=pl.col("n_tokens").sum())
    counts: dict[str, dict[str, dict[str, int]]] = {"records": {}, "tokens": {}}
    for split_name, domain, n, tokens in grouped.sort("split", "domain").collect().iter_rows():
        counts["records"].setdefault(split_name, {})[domain] = int(n)
        counts["tokens"].setdefault(split_name, {})[domain] = int(tokens)
    return counts


def inherited_counts(inputs: Inputs) -> dict[str, Any]:
    """Rejects and duplicates found upstream, so a late version still reports its whole lineage."""
    rejects = sum(m.counts.get("rejects", 0) for m in inputs.manifests)
    if inputs.rejects is not None and not inputs.manifests:
        rejects += int(inputs.rejects.select(pl.len()).collect().item())
    duplicates: dict[str, int] = {}
    for manifest in inputs.manifests:
        for reason, n in manifest.counts.get("duplicates", {}).items():
            duplicates[reason] = duplicates.get(reason, 0) + n
    return {"rejects": rejects, "duplicates": duplicates}


def run_stage(
    store: DatasetStore, name: str, stage: str, specs: Sequence[str], config: dict[str, Any],
    compute: Callable[[Inputs, str, DatasetStore], StageOutput], run: dict[str, Any] | None = None,
    on_compute: Callable[[], None] | None = None,
) -> StageRun:
    """Reuse the version for (inputs, config, code, tokenizer) if registered, else compute and register it
    (``on_compute`` is told first: a workflow records which stages did work)."""
    inputs = load_inputs(store, specs)
    tokenizer_hash = inputs.tokenizer_hash
    code = code_version()
    version = version_id(stage, inputs.refs, config, code, tokenizer_hash)
    existing = store.find(name, version)
    if existing is not None:
        return StageRun(existing, reused=True, version=version)
    if _PLANNING.get():
        return StageRun(None, reused=False, version=version)
    if on_compute is not None:
        on_compute()
    keep_tokenizer(store, inputs)
    output = compute(inputs, version, store)
    tables = {
        table: data if isinstance(data, TableRef) else store.write_table(name, table, data)
        for table, data in output.tables.items()
    }
    manifest = Manifest(
        name=name, version=version, stage=stage, inputs=inputs.refs, config=config, code_version=code,
        tokenizer_hash=tokenizer_hash, counts=output.counts, tables=tables, outputs=output.outputs, run=run or {},
    )
    return StageRun(store.register(manifest, output.staged_files), reused=False, version=version)
