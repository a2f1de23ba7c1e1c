"""The plain records that flow between pipeline steps, and the one Parquet schema of the shards.

- ``SourceItem``: one raw input record as a reader found it (an mmCIF entry, a SMILES line, ...).
- ``Sample``: one grammar string a source made from an item (an item can make several).
- ``Reject``: an item, or one object inside it, that could not be turned into grammar, with why.
- ``SHARD_SCHEMA``: the columns every tokenized shard has.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


@dataclass(slots=True)
class SourceItem:
    source: str  # "pdb" | "chembl" | "mp" | "uspto" | "smiles"
    uri: str  # the file it came from
    locator: str  # where in that file: "line 17", "entry 1ABC", "block 3", "row 12"
    payload: Any  # raw text, bytes or a parsed dict, as the source's reader yields it


@dataclass(slots=True)
class Sample:
    domain: str  # grammar.formats.DOMAINS
    task: str  # grammar.formats.FORMATS key
    text: str
    source_id: str  # the id in the source: PDB id + chain/ligand, ChEMBL id, mp-id, patent + row
    dedup_key: str  # canonical key for exact dedup (issue: dedup stage); "" when not applicable
    metadata: dict[str, Any] = field(default_factory=dict)  # resolution, year, method, patent, ...
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
    ]
)

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
        "metadata": json.dumps(sample.metadata, sort_keys=True, default=str),
        "source_uri": item.uri,
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


def dedup_key(domain: str, canonical: str) -> str:
    """Exact-dedup key: the domain plus a hash of the record's canonical form.

    Canonical forms (written by each source): protein -> chain sequences joined by '/'; molecule ->
    InChIKey (standardized canonical SMILES where InChI has none); pocket/complex -> sequences, ligand
    InChIKey and pocket positions; reaction -> canonical unmapped 'reactants>>products'.
    Crystals use ``material_group_key`` instead, because their duplicates need a StructureMatcher.
    """
    return f"{domain}:{hashlib.sha256(canonical.encode()).hexdigest()[:40]}"


def material_group_key(reduced_formula: str, space_group: int) -> str:
    """Crystals group by (reduced formula, space group); the dedup stage matches structures inside."""
    return f"material:{reduced_formula}:{space_group}"
