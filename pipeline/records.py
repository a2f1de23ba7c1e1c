"""The plain records that flow between pipeline steps, and the one Parquet schema of the shards.

- ``SourceItem``: one raw input record as a reader found it (an mmCIF entry, a SMILES line, ...).
- ``SourceBlock``: many raw records of one file as columns, for sources that convert a batch at once.
- ``Sample``: one grammar string a source made from an item (an item can make several).
- ``Reject``: an item, or one object inside it, that could not be turned into grammar, with why.
- ``SHARD_SCHEMA``: the columns every tokenized shard has.

Split groups are derived once, at ingest, from the object the source already parsed, and carried as the
``split_group`` column so the split stage never re-parses text to find them: a molecule's
``scaffold:<Murcko SMILES>`` (``acyclic:<dedup key>`` without rings), a reaction's ``product:<canonical
products>``, a material's ``key:<dedup key>``, a UniRef member's ``uniref:<cluster id>``. "" means "no
fixed group": proteins, pockets, complexes and antibodies are clustered by sequence in the split stage.
Functions that make these keys: ``pipeline.groups``.

For the records split clusters by sequence whose text is more than their chains (pockets, complexes,
antibodies: pocket tags, residues written as SMILES, a ligand), the shard also carries the chains,
``chain_sequences`` (list<string>), taken from the object the text was written from (``Sample.obj``),
so split reads them instead of parsing the text (a pocket or complex record costs 0.5-1 ms to parse).
A plain ``protein`` record leaves it null: its text is nothing but its chains, which split reads with a
vectorized split on the tags, and storing them again would add ~49% to a UniProt shard's bytes. Rows
with a fixed ``split_group`` (UniRef members) and all non-protein rows leave it null too.

Shards written before these columns existed (``SHARD_COLUMN_DEFAULTS``) read as ""/null, and split then
derives every group from the text as it always did (same groups).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.groups import chain_sequences_of


@dataclass(slots=True)
class SourceItem:
    source: str  # "pdb" | "chembl" | "mp" | "uspto" | "smiles"
    uri: str  # the file it came from
    locator: str  # where in that file: "line 17", "entry 1ABC", "block 3", "row 12"
    payload: Any  # raw text, bytes or a parsed dict, as the source's reader yields it


@dataclass(slots=True)
class SourceBlock:
    """Consecutive raw records of one file held as columns, for a source that converts many records in one call
    (``convert_block``, see ``pipeline.sources.base``). For a FASTA record the per-record objects (a
    ``SourceItem`` and its payload, their pickling between the read and convert steps, a ``Sample``, a row dict)
    cost more than the record's conversion itself; a block carries two lists of strings instead.

    Record ``i`` of the block is ``f"{unit} {first + i}"`` in its file, the locator the per-record reader gives it.
    """

    source: str
    uri: str
    first: int  # the number (1-based) of the block's first record in its file
    columns: dict[str, list[Any]]  # equal-length raw columns, e.g. {"header": [...], "sequence": [...]}
    unit: str = "record"

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), ()))

    @property
    def locator(self) -> str:
        """The block's last record: a read failure after the block reads "after record N", as per record."""
        return f"{self.unit} {self.first + len(self) - 1}"


@dataclass(slots=True)
class Sample:
    domain: str  # grammar.formats.DOMAINS
    task: str  # grammar.formats.FORMATS key
    text: str
    source_id: str  # the id in the source: PDB id + chain/ligand, ChEMBL id, mp-id, patent + row
    dedup_key: str  # canonical key for exact dedup (issue: dedup stage); "" when not applicable
    metadata: dict[str, Any] = field(default_factory=dict)  # resolution, year, method, patent, ...
    # The record's split group when the source knows it (see the module docstring); "" = derive in split.
    split_group: str = ""
    # The grammar object the text was written from (not stored): lets `logos check roundtrip` compare the
    # decoded object with the source object rather than only the re-written text.
    obj: Any = field(default=None, repr=False, compare=False)


@dataclass(slots=True)
class Reject:
    source: str
    source_uri: str
    locator: str
    stage: str  # "read" | "parse" | "convert" | "validate" | "tokenize"
    reason_code: str  # short, groupable: "invalid_smiles", "disordered_structure", "corrupt_gzip", ...
    reason: str  # the full, human-readable message


def content_id(task: str, text: str) -> str:
    """Stable id of a grammar record: same task and text -> same id, on any machine."""
    return hashlib.sha256(f"{task}\x00{text}".encode()).hexdigest()[:32]


def content_ids(task: str, texts: Iterable[str]) -> list[str]:
    """``content_id`` of many texts of one task (block paths): the same ids, the task's share of each hash input
    hashed once and copied (~20% less time a UniProt record)."""
    prefix = hashlib.sha256(f"{task}\x00".encode())
    ids = []
    for text in texts:
        digest = prefix.copy()
        digest.update(text.encode())
        ids.append(digest.hexdigest()[:32])
    return ids


SHARD_SCHEMA = pa.schema(
    [
        ("content_id", pa.string()),
        ("source", pa.string()),
        ("source_id", pa.string()),
        ("domain", pa.string()),
        ("task", pa.string()),
        ("text", pa.large_string()),
        ("input_ids", pa.list_(pa.int32())),
        ("n_tokens", pa.int32()),
        ("dedup_key", pa.string()),
        ("metadata", pa.string()),  # JSON object; query with polars' str.json_path_match or duckdb json
        ("source_uri", pa.string()),
        ("split_group", pa.string()),  # "" = none fixed at ingest (module docstring)
        ("chain_sequences", pa.list_(pa.string())),  # null unless split clusters the record's chains
    ]
)

# Columns added to SHARD_SCHEMA after shards were first written, with the value an older shard means.
SHARD_COLUMN_DEFAULTS: dict[str, Any] = {"split_group": "", "chain_sequences": None}

REJECT_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("source_uri", pa.string()),
        ("locator", pa.string()),
        ("stage", pa.string()),
        ("reason_code", pa.string()),
        ("reason", pa.string()),
    ]
)


# json.dumps with any non-default option builds a new JSONEncoder per call (~25 us, a tenth of a UniProt
# record's ingest); one encoder, same output.
METADATA_JSON = json.JSONEncoder(sort_keys=True, default=str).encode


def shard_row(sample: Sample, item: SourceItem, input_ids: list[int]) -> dict[str, Any]:
    return {
        "content_id": content_id(sample.task, sample.text),
        "source": item.source,
        "source_id": sample.source_id,
        "domain": sample.domain,
        "task": sample.task,
        "text": sample.text,
        "input_ids": input_ids,
        "n_tokens": len(input_ids),
        "dedup_key": sample.dedup_key,
        "metadata": METADATA_JSON(sample.metadata),
        "source_uri": item.uri,
        "split_group": sample.split_group,
        # A plain protein's text is its chains already (split reads them from it; pipeline.split.group_sources).
        "chain_sequences": None if sample.split_group or sample.task == "protein" else chain_sequences_of(sample.obj),
    }


def reject_row(reject: Reject) -> dict[str, Any]:
    return {
        "source": reject.source,
        "source_uri": reject.source_uri,
        "locator": reject.locator,
        "stage": reject.stage,
        "reason_code": reject.reason_code,
        "reason": reject.reason,
    }


POLARS_TYPES = {"split_group": pl.String, "chain_sequences": pl.List(pl.String)}


def conform_shard_frame(frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame | pl.LazyFrame:
    """``frame`` (a polars DataFrame or LazyFrame of shard rows) with every SHARD_SCHEMA column, in order: a
    shard written before a column existed gets its ``SHARD_COLUMN_DEFAULTS`` value."""
    import polars as pl

    names = frame.collect_schema().names() if isinstance(frame, pl.LazyFrame) else frame.columns
    # Absent (an older shard), or null (an older file scanned with a newer one, missing_columns="insert").
    defaults = [
        (pl.col(k).fill_null(v) if k in names else pl.lit(v, dtype=POLARS_TYPES[k])).alias(k)
        for k, v in SHARD_COLUMN_DEFAULTS.items() if v is not None or k not in names
    ]
    return frame.with_columns(defaults).select(SHARD_SCHEMA.names)


def conform_shard_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """An Arrow batch of shard rows with every SHARD_SCHEMA column, in order, cast to its type."""
    for name, value in SHARD_COLUMN_DEFAULTS.items():
        if name not in batch.schema.names:
            batch = batch.append_column(name, pa.array([value] * batch.num_rows, SHARD_SCHEMA.field(name).type))
        elif value is not None and batch[name].null_count:
            column = pc.fill_null(batch[name], value)
            batch = batch.set_column(batch.schema.get_field_index(name), name, column)
    return batch.select(SHARD_SCHEMA.names).cast(SHARD_SCHEMA)


def dedup_key(domain: str, canonical: str) -> str:
    """Exact-dedup key: the domain plus a hash of the record's canonical form.

    Canonical forms (written by each source): protein -> chain sequences joined by '/'; molecule -> its
    canonical isomeric SMILES (the record's text; InChIKey with ``molecule_key=inchikey``, see
    ``pipeline.sources.smiles.MoleculeKey``); pocket/complex -> sequences, ligand
    InChIKey and pocket positions; reaction -> canonical unmapped 'reactants>>products'.
    Crystals use ``material_group_key`` instead, because their duplicates need a StructureMatcher.
    """
    return f"{domain}:{hashlib.sha256(canonical.encode()).hexdigest()[:40]}"


def dedup_keys(domain: str, canonicals: Iterable[str]) -> list[str]:
    """``dedup_key`` of many canonical forms of one domain (block paths): the same keys, without a call each."""
    sha256 = hashlib.sha256
    return [f"{domain}:{sha256(canonical.encode()).hexdigest()[:40]}" for canonical in canonicals]


def material_group_key(reduced_formula: str, space_group: int) -> str:
    """Crystals group by (reduced formula, space group); the dedup stage matches structures inside."""
    return f"material:{reduced_formula}:{space_group}"
