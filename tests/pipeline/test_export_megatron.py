"""Megatron export of the real fixture: read back with megatron-core, and the blend reproduces the weights."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from megatron.core.datasets.indexed_dataset import IndexedDataset

from grammar.tokenizer import default_tokenizer
from pipeline.dedup import ExactDedupConfig, exact_dedup
from pipeline.export_megatron import (
    ExportConfig,
    ExportError,
    PrefixWriter,
    export_megatron,
    megatron_dtype,
    partition_documents,
)
from pipeline.mix import MixConfig, mix
from pipeline.split import ProteinClusterConfig, SplitConfig, assign_splits
from training.blend import read_blend

WEIGHTS = {"molecule": 0.5, "reaction": 0.3, "protein": 0.15, "material": 0.05}


@pytest.fixture(scope="module")
def split_records(shards) -> pl.DataFrame:
    kept = exact_dedup(ExactDedupConfig(), shards.records).kept
    config = SplitConfig(fractions=(0.7, 0.15, 0.15), proteins=ProteinClusterConfig(method="minhash"))
    return assign_splits(config, kept).records


@pytest.fixture(scope="module")
def exported(split_records, tmp_path_factory):
    tokens = split_records.group_by("split", "domain").agg(n=pl.col("n_tokens").sum() + pl.len(), docs=pl.len())
    token_counts, doc_counts = {}, {}
    for split, domain, n, docs in tokens.iter_rows():
        token_counts.setdefault(split, {})[domain] = n
        doc_counts.setdefault(split, {})[domain] = docs
    mixture = mix(MixConfig(weights=WEIGHTS), token_counts, doc_counts)
    weights = {split: mixture.weights(split) for split in mixture.splits()}
    out = tmp_path_factory.mktemp("export")
    config = ExportConfig(docs_per_shard=150, batch_rows=37)  # several shards and batches per prefix
    result = export_megatron(config, split_records, weights, out, default_tokenizer(), {"name": "t", "version": "v"})
    return result, out, weights


def test_bin_idx_read_back_token_for_token(split_records, exported):
    result, out, _ = exported
    bos, eod = default_tokenizer().token_id("<bos>"), default_tokenizer().token_id("<eos>")
    for (split, domain), rows in split_records.group_by("split", "domain"):
        dataset = IndexedDataset(str(out / "megatron" / split / domain))
        assert len(dataset) == rows.height == result.documents[split][domain]
        assert dataset.index.dtype == np.uint16  # vocabulary of 28,747 < 65,500
        for i, ids in enumerate(rows["input_ids"].to_list()):
            assert dataset[i].tolist() == [bos, *ids, eod]  # a document starts as a prompt does
        assert result.tokens[split][domain] == rows["n_tokens"].sum() + 2 * rows.height
    leftovers = [p for p in (out / "megatron").rglob("*") if ".shard" in p.name]
    assert not leftovers


def test_sharded_and_single_pass_files_are_identical(split_records, exported, tmp_path):
    _, out, weights = exported
    export_megatron(ExportConfig(docs_per_shard=10**9), split_records, weights, tmp_path, default_tokenizer(),
                    {"name": "t", "version": "v"})
    for path in (out / "megatron").rglob("*.*"):
        assert path.read_bytes() == (tmp_path / path.relative_to(out)).read_bytes(), path


def test_blend_file_names_weights_tokenizer_and_dataset(exported):
    result, out, weights = exported
    blend = json.loads(result.blend_path.read_text())
    tokenizer = default_tokenizer()
    assert blend["format"] == "logos-megatron-blend/1"
    assert blend["dtype"] == "uint16"
    assert blend["tokenizer"] == {"path": "tokenizer", "kind": "native", "content_hash": tokenizer.content_hash,
                                  "vocab_size": tokenizer.vocab_size, "eod_id": tokenizer.token_id("<eos>"),
                                  "pad_id": tokenizer.token_id("<pad>"), "bos_id": tokenizer.token_id("<bos>"),
                                  "prefix_ids": [tokenizer.token_id("<bos>")]}
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    for split, entry in blend["splits"].items():
        assert entry["domains"] == sorted(weights[split])
        assert entry["weights"] == [weights[split][d] for d in entry["domains"]]
        assert entry["prefixes"] == [f"megatron/{split}/{d}" for d in entry["domains"]]
    assert blend["dataset"] == {"name": "t", "version": "v"}
    train = read_blend(result.blend_path).split("train")  # the training side's reader accepts it
    assert train.domains == tuple(blend["splits"]["train"]["domains"])


class BlendTokenizer:
    """What megatron's GPTDataset needs from a tokenizer."""

    def __init__(self) -> None:
        tokenizer = default_tokenizer()
        self.vocab_size, self.eod, self.pad = tokenizer.vocab_size, tokenizer.eos_id, tokenizer.pad_id
        self.unique_identifiers = {"class": "logos-test", "hash": tokenizer.content_hash}


def test_megatron_blended_dataset_reproduces_the_weights_within_one_percent(exported):
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    result, out, _ = exported
    blend = json.loads(result.blend_path.read_text())
    per_split = [
        ([str(out / p) for p in blend["splits"][s]["prefixes"]], blend["splits"][s]["weights"]) if s in blend["splits"]
        else None
        for s in ("train", "valid", "test")
    ]
    config = GPTDatasetConfig(
        random_seed=1234, sequence_length=64, blend_per_split=per_split, tokenizer=BlendTokenizer(),
        path_to_cache=None, reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False,
    )
    train, *_ = BlendedMegatronDatasetBuilder(GPTDataset, [20_000, 0, 0], lambda: True, config).build()
    shares = np.bincount(train.dataset_index, minlength=len(train.datasets)) / len(train.dataset_index)
    for dataset, share, weight in zip(train.datasets, shares, blend["splits"]["train"]["weights"], strict=True):
        assert abs(share - weight) < 0.01, (dataset.dataset_path, share, weight)
    assert train[0]["tokens"].shape == (64,)


def test_dtype_rule():
    assert megatron_dtype(28_747) is np.uint16
    assert megatron_dtype(65_500) is np.int32


def test_an_extended_tokenizer_past_uint16_exports_int32_documents(split_records, tmp_path):
    """A Llama-3-style base with enough reserved specials to pass 65,535 ids, extended with the grammar;
    the records re-tokenized with it, exported, and read back with megatron-core."""
    from grammar.hf_extend import ExtendedTokenizer
    from grammar.tokenizer import load_tokenizer
    from tests.grammar.base_tokenizers import make_base_tokenizer

    base = make_base_tokenizer("llama3", tmp_path / "base", reserved=66_000)
    tokenizer = ExtendedTokenizer.build(base)
    assert tokenizer.vocab_size > 65_535
    records = split_records.head(300)
    records = records.with_columns(input_ids=pl.Series(tokenizer.encode_batch(records["text"].to_list()),
                                                       dtype=pl.List(pl.Int32)))
    weights = {split: {"molecule": 0.5, "reaction": 0.5} for split in ("train", "valid", "test")}
    result = export_megatron(ExportConfig(), records, weights, tmp_path / "out", tokenizer,
                             {"name": "t", "version": "v"})
    blend = json.loads(result.blend_path.read_text())
    assert blend["dtype"] == "int32"
    assert blend["tokenizer"]["kind"] == "extended" and blend["tokenizer"]["vocab_size"] == tokenizer.vocab_size
    saved = load_tokenizer(tmp_path / "out" / "tokenizer")
    bos, eod = saved.token_id("<|begin_of_text|>"), saved.token_id("<|end_of_text|>")
    assert (blend["tokenizer"]["bos_id"], blend["tokenizer"]["eod_id"]) == (bos, eod)
    assert blend["tokenizer"]["pad_id"] == saved.token_id("<|eot_id|>")
    for (split, domain), rows in records.group_by("split", "domain"):
        dataset = IndexedDataset(str(tmp_path / "out" / "megatron" / split / domain))
        assert dataset.index.dtype == np.int32
        for i, text in enumerate(rows["text"].to_list()):
            assert dataset[i].tolist()[0] == bos and dataset[i].tolist()[-1] == eod
            assert saved.decode(dataset[i].tolist()[1:-1]) == text


def test_a_bin_that_reads_back_different_is_an_error(split_records, tmp_path):
    """``verify`` compares each piece's bytes, read back from the ``.bin``, with the digest its builder took:
    one flipped byte in the second piece is found and named."""
    tokenizer = default_tokenizer()
    dtype = megatron_dtype(tokenizer.vocab_size)
    start, eod = [int(i) for i in tokenizer.prefix_ids], int(tokenizer.eod_id)
    rows = split_records.filter(pl.col("split") == "train", pl.col("domain") == "molecule")
    first, second = (partition_documents(part, start, eod, dtype)[0] for part in (rows.head(20), rows.slice(20, 20)))
    writer = PrefixWriter(tmp_path / "megatron" / "train" / "molecule", dtype)
    writer.append(first)
    writer.append(second)
    writer.bin.flush()
    with open(tmp_path / "megatron" / "train" / "molecule.bin", "r+b") as handle:
        handle.seek(first.tokens.nbytes + 3)
        byte = handle.read(1)
        handle.seek(first.tokens.nbytes + 3)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ExportError, match=r"reads back different .*\(piece 1 of 2\)"):
        writer.finish(verify=True)
