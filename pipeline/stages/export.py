"""``export``: Megatron ``.bin/.idx`` per split and domain and a blend, from a split (or mixed) dataset."""

from __future__ import annotations

from pipeline.export_megatron import BLEND_FILE, ExportConfig, export_files, export_megatron
from pipeline.mix import mix
from pipeline.partitions import from_json
from pipeline.stages.mix import NATURAL_MIX, counted_tokens, only_dataset, shared_tables
from pipeline.versions import DatasetStore, Manifest
from pipeline.versions.stage import Inputs, StageOutput, semantic_config, stage_tokenizer

CONFIG = ExportConfig
identity = semantic_config


def compute(config: ExportConfig, loaded: Inputs, name: str, version: str, store: DatasetStore) -> StageOutput:
    """``.bin/.idx`` per (split, domain) and a blend; weights from the input's mixture (natural if none).

    The documents are written with the input's tokenizer (its prefix and EOD), which is saved next to the
    blend; int32 when its vocabulary does not fit uint16."""
    source = only_dataset(loaded, "export")
    tokenizer = stage_tokenizer(store, loaded)
    specials = len(tokenizer.prefix_ids) + 1
    mixture = source.outputs.get("mixture") or mix(NATURAL_MIX, *counted_tokens(source, store, specials)).as_dict()
    weights: dict[str, dict[str, float]] = {}
    for share in mixture["shares"]:
        weights.setdefault(share["split"], {})[share["domain"]] = share["weight"]
    staging = store.staging_dir(name, version)
    dataset = {"name": name, "version": version}
    if "partitions" in source.outputs:  # each task reads its partition's records rows and assignments file
        plan = from_json([p["records"] for p in source.outputs["partitions"]], store.uri(source.tables["records"].path))
        assignments = [store.uri(source.tables["assignments"].path, p["assignments"])
                       for p in source.outputs["partitions"]]
        result = export_files(config, list(zip(plan, assignments, strict=True)), weights, staging, tokenizer, dataset,
                              workers=config.workers, storage=store.delta_options())
    else:  # a version split before partitions were recorded: its records stream through this process
        result = export_megatron(config, store.scan(source), weights, staging, tokenizer, dataset,
                                 workers=config.workers)
    blend = store.files_path(name, version, BLEND_FILE)
    outputs = {"blend": str(blend), "mixture": mixture, "documents": result.documents, "tokens": result.tokens}
    return StageOutput(shared_tables(source), source.counts, outputs, staging)


def describe(manifest: Manifest, store: DatasetStore) -> str:
    return f"blend: {store.uri(manifest.outputs['blend'])}"
