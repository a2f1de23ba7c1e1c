"""Evaluation fixtures: a split dataset made by the real sources from the bundled demo data, and a tiny model.

The records come from the sources' own read -> convert loop (``pipeline.sources``) over
``workflows/demo_data`` (PDB entries with pockets and complexes, ChEMBL molecules, Materials Project
crystals, USPTO-50k reactions), tokenized and laid out as ingest shards, then deduplicated and split by
the dataset stages. Half of the groups go to test so that every task has test records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from grammar.tokenizer import default_tokenizer
from pipeline.datasets import dedup_dataset, split_dataset
from pipeline.records import REJECT_SCHEMA, SHARD_SCHEMA, shard_row
from pipeline.sources import make_source
from pipeline.split import ProteinClusterConfig, SplitConfig
from pipeline.versions import DatasetStore

DEMO = Path(__file__).resolve().parents[3] / "workflows" / "demo_data"
TESTS_DATA = Path(__file__).resolve().parents[2] / "data"
N_REACTIONS = 120  # of the 400 USPTO-50k rows: enough products for both splits, quick to build
SOURCES = {
    # The demo's entries plus two bundled test entries: BioLiP's artefact list drops 5H73's orotate, and the
    # pocket tasks need a few test-split pockets.
    "pdb": ([DEMO / "pdb" / f for f in ("1k6p.cif.gz", "1pfe.cif.gz", "3o5r.cif.gz", "5h73.cif.gz")]
            + [TESTS_DATA / "pdb" / "mmcif" / f for f in ("4ZHL.cif", "7gsa.cif")],
            {"components_path": str(DEMO / "pdb" / "components_demo.cif")}),
    "chembl": ([DEMO / "chembl" / "chembl_30_chemreps_100.txt"], {}),
    "mp": (sorted((DEMO / "mp").glob("*.json")), {}),
    "uspto": ([DEMO / "uspto" / "USPTO_50K_first400.csv.gz"], {}),
}


@dataclass
class EvalDataset:
    store: DatasetStore
    ref: str  # the split version
    unsplit_ref: str  # the dedup version (no split column)


def ingest_like(out: Path) -> Path:
    """Shards as the ingest engine writes them, from each source's read + convert of the demo files."""
    rows = []
    tokenizer = default_tokenizer()
    for name, (files, options) in SOURCES.items():
        source = make_source(name, options)
        items = 0
        for path in files:
            for item in source.read(str(path)):
                if not hasattr(item, "payload"):  # a Reject from the reader
                    continue
                items += 1
                if name == "uspto" and items > N_REACTIONS:
                    break
                for sample in source.convert(item).samples:
                    rows.append(shard_row(sample, item, tokenizer.encode(sample.text)))
    (out / "records").mkdir(parents=True)
    (out / "rejects").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=SHARD_SCHEMA), out / "records" / "demo.parquet")
    pq.write_table(pa.Table.from_pylist([], schema=REJECT_SCHEMA), out / "rejects" / "rejects.parquet")
    (out / "summary.json").write_text(json.dumps({"records": len(rows), "rejects": 0}))
    return out


@pytest.fixture(scope="session")
def eval_dataset(tmp_path_factory) -> EvalDataset:
    root = tmp_path_factory.mktemp("evaldata")
    shards = ingest_like(root / "shards")
    store = DatasetStore(root / "datasets")
    deduplicated = dedup_dataset(store, [str(shards)], "evaldemo", near=None).manifest
    config = SplitConfig(fractions=(0.5, 0.0, 0.5), proteins=ProteinClusterConfig(method="minhash"))
    split = split_dataset(store, deduplicated.ref, "evaldemo", config).manifest
    return EvalDataset(store, split.ref, deduplicated.ref)


@pytest.fixture(scope="session")
def test_split(eval_dataset):
    from training.evaluation.references import test_records

    return test_records(eval_dataset.store, eval_dataset.ref)[1]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained two-layer Llama over the grammar vocabulary, saved with the grammar tokenizer: a real
    transformers export to drive generation with (its answers are noise; the scorers are tested apart)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = default_tokenizer()
    out = tmp_path_factory.mktemp("tiny_model")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_id, bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save(out)
    return out
