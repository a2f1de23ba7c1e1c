"""The blend reader, the tokenizer adapter and the Megatron datasets, on the fixture blend."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest

from tests.training.helpers import TRAIN_WEIGHTS, make_config
from training.blend import BlendError, load_tokenizer, read_blend
from training.data import MegatronGrammarTokenizer, build_datasets, domain_shares, step_microbatches


@pytest.fixture
def blend_copy(blend_path, tmp_path):
    target = tmp_path / "blend"
    shutil.copytree(blend_path.parent, target)
    return target / "blend.json"


def _edit(path, change) -> None:
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


def test_blend_resolves_prefixes_relative_to_its_file(blend_path):
    blend = read_blend(blend_path)
    train = blend.split("train")
    assert train.domains == ("molecule", "protein") and train.weights == (0.6, 0.4)
    assert all(p.startswith(str(blend_path.parent)) for p in train.prefixes)
    assert blend.lineage()["dataset"] == {"name": "fixture", "version": "test-1"}
    tokenizer = load_tokenizer(blend)
    assert tokenizer.content_hash == blend.tokenizer_hash and tokenizer.eos_id == blend.eod_id == 2


def test_a_blend_with_an_extended_tokenizer_loads_and_feeds_megatron_its_specials(blend_copy):
    from grammar.hf_extend import ExtendedTokenizer
    from tests.grammar.base_tokenizers import make_base_tokenizer

    base = make_base_tokenizer("llama3", blend_copy.parent / "base")
    extended = ExtendedTokenizer.build(base)
    shutil.rmtree(blend_copy.parent / "tokenizer")
    extended.save(blend_copy.parent / "tokenizer")
    _edit(blend_copy, lambda raw: raw["tokenizer"].update(
        kind="extended", content_hash=extended.content_hash, vocab_size=extended.vocab_size,
        eod_id=extended.eod_id, pad_id=extended.pad_id, bos_id=extended.bos_id))
    adapter = MegatronGrammarTokenizer(load_tokenizer(read_blend(blend_copy)))
    assert adapter.eod == extended.token_id("<|end_of_text|>") and adapter.pad == extended.token_id("<|eot_id|>")
    assert adapter.bos == extended.token_id("<|begin_of_text|>")
    assert adapter.unique_identifiers == {"class": "logos.extended", "content_hash": extended.content_hash}
    _edit(blend_copy, lambda raw: raw["tokenizer"].update(kind="native"))
    with pytest.raises(BlendError, match="kind: blend says 'native', tokenizer has 'extended'"):
        load_tokenizer(read_blend(blend_copy))


def test_tokenizer_hash_mismatch_is_refused(blend_copy):
    _edit(blend_copy, lambda raw: raw["tokenizer"].update(content_hash="sha256:" + "0" * 64))
    with pytest.raises(BlendError, match=r"content_hash: blend says 'sha256:0+', tokenizer has 'sha256:[0-9a-f]{64}'"):
        load_tokenizer(read_blend(blend_copy))


@pytest.mark.parametrize(("change", "message"), [
    (lambda raw: raw.update(format="other/1"), "format must be 'logos-megatron-blend/1'"),
    (lambda raw: raw["splits"].pop("train"), "a 'train' split is required"),
    (lambda raw: raw["splits"]["train"].update(weights=[0.6]), "must be non-empty and of equal length"),
    (lambda raw: raw["splits"]["train"].update(weights=[0.6, -1]), "every weight must be a positive number"),
    (lambda raw: raw["splits"]["valid"]["prefixes"].__setitem__(0, "megatron/valid/missing"),
     "prefix 'megatron/valid/missing' has no"),
    (lambda raw: raw["tokenizer"].pop("eod_id"), "tokenizer: missing key 'eod_id'"),
])
def test_malformed_blends_name_the_problem(blend_copy, change, message):
    _edit(blend_copy, change)
    with pytest.raises(BlendError) as error:
        read_blend(blend_copy)
    assert message in str(error.value) and str(blend_copy) in str(error.value)


def test_adapter_exposes_what_megatron_datasets_need(blend_path):
    adapter = MegatronGrammarTokenizer(load_tokenizer(read_blend(blend_path)))
    assert adapter.eod == 2 and adapter.pad == 0 and adapter.vocab_size == read_blend(blend_path).vocab_size
    assert adapter.unique_identifiers["content_hash"] == read_blend(blend_path).tokenizer_hash
    json.dumps(adapter.unique_identifiers)  # megatron hashes it into the dataset cache key


def test_train_mixture_is_the_blend_and_validation_is_per_domain(blend_path, tmp_path):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    config = make_config(tmp_path, blend_path, "train_steps=250", "logging.eval_iters=2")
    blend = read_blend(blend_path)
    adapter = MegatronGrammarTokenizer(load_tokenizer(blend))
    datasets = build_datasets(config, blend, adapter)

    assert len(datasets.train) == 250 * 4
    shares = domain_shares(datasets.train, blend.split("train").domains)
    assert shares == pytest.approx(TRAIN_WEIGHTS, abs=1 / len(datasets.train))

    # Each validation set reads only its own domain's valid prefix: every token of its samples
    # occurs in that prefix and the first sample starts inside one of its documents.
    for domain, prefix in zip(blend.split("valid").domains, blend.split("valid").prefixes, strict=True):
        documents = IndexedDataset(prefix)
        vocabulary = Counter(int(t) for i in range(len(documents)) for t in documents[i])
        dataset = datasets.valid[domain]
        assert len(dataset) >= 2 * 4
        for i in range(8):
            sample = dataset[i]
            assert set(np.asarray(sample["tokens"]).tolist()) <= set(vocabulary)
            assert sample["tokens"].shape == (64,) and np.array_equal(sample["tokens"][1:], sample["labels"][:-1])
    assert datasets.valid_weights == TRAIN_WEIGHTS


def test_same_seed_same_order(blend_path, tmp_path):
    config = make_config(tmp_path, blend_path, "train_steps=3")
    blend = read_blend(blend_path)
    adapter = MegatronGrammarTokenizer(load_tokenizer(blend))
    first, second = build_datasets(config, blend, adapter).train, build_datasets(config, blend, adapter).train
    other = build_datasets(make_config(tmp_path, blend_path, "train_steps=3", "data.seed=7"), blend, adapter).train
    tokens = [np.asarray(first[i]["tokens"]) for i in range(12)]
    assert all(np.array_equal(t, np.asarray(second[i]["tokens"])) for i, t in enumerate(tokens))
    assert not all(np.array_equal(t, np.asarray(other[i]["tokens"])) for i, t in enumerate(tokens))


@pytest.mark.parametrize("dp", [1, 2, 4])
def test_microbatches_cover_each_global_batch_once(blend_path, tmp_path, dp):
    config = make_config(tmp_path, blend_path, f"parallel.data={dp}", "data.global_batch_size=8",
                         "data.micro_batch_size=2")
    for first_sample in (0, 8, 40):
        indices = [i for rank in range(dp) for r in step_microbatches(first_sample, config, rank) for i in r]
        assert sorted(indices) == list(range(first_sample, first_sample + 8))
        assert all(len(step_microbatches(first_sample, config, rank)) == 8 // (2 * dp) for rank in range(dp))
