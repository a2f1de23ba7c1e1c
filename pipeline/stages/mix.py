"""``mix``: mixture weights per split and domain for a split dataset; its records are the input's."""

from __future__ import annotations

from typing import Any

import polars as pl

from pipeline.mix import MixConfig, Mixture, mix
from pipeline.versions import DatasetStore, Manifest, TableRef
from pipeline.versions.stage import Inputs, StageOutput, semantic_config, stage_tokenizer

CONFIG = MixConfig
NATURAL_MIX = MixConfig(temperature=1.0)  # export of an unmixed input: every domain in its own proportion
SPLIT_TABLES = ("records", "assignments")  # what a split version's records are read from (store.scan joins)
identity = semantic_config


def token_counts(
    records: pl.LazyFrame, specials: int = 1
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Tokens as exported (``specials`` per document: the tokenizer's prefix and the EOD) and documents
    per split and domain."""
    grouped = records.group_by("split", "domain").agg(docs=pl.len(),
                                                      tokens=pl.col("n_tokens").sum() + specials * pl.len())
    tokens: dict[str, dict[str, int]] = {}
    documents: dict[str, dict[str, int]] = {}
    # Sorted: the dicts' order is the order mix() sums weights in, so an unsorted (threaded) group_by gave
    # weights differing in the last bits from run to run, hence blends differing within one version id.
    for split, domain, docs, n in grouped.sort("split", "domain").collect().iter_rows():
        tokens.setdefault(split, {})[domain] = int(n)
        documents.setdefault(split, {})[domain] = int(docs)
    return tokens, documents


def counted_tokens(
    manifest: Manifest, store: DatasetStore, specials: int = 1
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """``token_counts`` of a split version's records, from the records and tokens per split and domain its
    manifest counts (the split stage counts exactly the records the join gives): no pass over the records.
    A version without those counts is read (``token_counts`` over ``store.scan``)."""
    records, tokens = manifest.counts.get("records"), manifest.counts.get("tokens")
    if not records or not tokens or set(records) == {"all"}:
        return token_counts(store.scan(manifest), specials)
    exported: dict[str, dict[str, int]] = {}
    documents: dict[str, dict[str, int]] = {}
    for split in sorted(records):  # sorted as token_counts: the order mix() sums weights in
        for domain in sorted(records[split]):
            n = int(records[split][domain])
            exported.setdefault(split, {})[domain] = int(tokens[split][domain]) + specials * n
            documents.setdefault(split, {})[domain] = n
    return exported, documents


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


def compute(config: MixConfig, loaded: Inputs, name: str, version: str, store: DatasetStore) -> StageOutput:
    """Mixture weights for a split dataset; the records are the input's."""
    source = only_dataset(loaded, "mix")
    specials = len(stage_tokenizer(store, loaded).prefix_ids) + 1
    mixture = mix(config, *counted_tokens(source, store, specials))
    return StageOutput(shared_tables(source), source.counts, {"mixture": mixture.as_dict()} | carried_outputs(source))


def carried_outputs(source: Manifest) -> dict[str, Any]:
    """What a stage that references its input's tables carries on: the split's ``partitions`` (each partition's
    records rows and assignments file), which the export's tasks read."""
    return {"partitions": source.outputs["partitions"]} if "partitions" in source.outputs else {}


def describe(manifest: Manifest, store: DatasetStore) -> str:
    return Mixture.from_dict(manifest.outputs["mixture"]).table()
