"""Typed config: presets against the published model shapes, strict YAML loading, overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from training.config import ConfigError, config_from_dict, config_to_dict, load_config
from training.presets import model_preset

# Parameter counts published for the base models (Hugging Face model cards / safetensors metadata),
# with their own vocabularies: Llama-3 128,256 tokens, Qwen3 151,936.
PUBLISHED = {
    "1b": (128_256, 1_235_814_400),  # meta-llama/Llama-3.2-1B
    "3b": (128_256, 3_212_749_824),  # meta-llama/Llama-3.2-3B
    "8b": (151_936, 8_190_735_360),  # Qwen/Qwen3-8B
}


@pytest.mark.parametrize("preset", sorted(PUBLISHED))
def test_presets_have_the_published_parameter_counts(preset):
    vocab, published = PUBLISHED[preset]
    assert model_preset(preset).parameter_count(vocab) == published


def test_qwen3_8b_non_embedding_parameters_match_its_model_card():
    model = model_preset("8b")
    non_embedding = model.parameter_count(151_936) - 2 * 151_936 * model.hidden_size
    assert round(non_embedding / 1e9, 2) == 6.95  # "Number of Parameters (Non-Embedding): 6.95B"


def test_grammar_vocabulary_is_padded_independently_of_tensor_parallelism():
    from grammar.tokenizer import default_tokenizer

    vocab = default_tokenizer().vocab_size
    padded = model_preset("1b").padded_vocab_size(vocab)
    assert padded >= vocab and padded % 128 == 0 and padded - vocab < 128
    for tp in (1, 2, 4, 8):
        assert padded % tp == 0


def test_yaml_with_preset_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: {preset: 1b, num_layers: 2}\nparallel: {tensor: 2}\ndata: {blend: b.json}\n")
    config = load_config(path, ["optimizer.lr=1e-3", "data.seq_length=128"])
    assert config.model.hidden_size == 2048 and config.model.num_layers == 2 and config.model.name == "llama3.2-1b"
    assert config.parallel.tensor == 2 and config.optimizer.lr == 1e-3 and config.data.seq_length == 128


def test_round_trip_through_a_plain_mapping():
    config = config_from_dict({"model": {"preset": "8b"}, "data": {"blend": "b.json"}, "train_steps": 7})
    assert config_from_dict(config_to_dict(config)) == config


@pytest.mark.parametrize(("text", "message"), [
    ("optimizer: {lrr: 1.0}\ndata: {blend: b}", "unknown config key optimizer.lrr"),
    ("trainsteps: 3\ndata: {blend: b}", "unknown config key trainsteps"),
    ("parallel: {tensor: two}\ndata: {blend: b}", "parallel.tensor: expected int, got str"),
    ("model: {preset: 70b}\ndata: {blend: b}", "unknown model preset '70b'"),
    ("train_steps: 3", "data.blend is required"),
    ("parallel: {tensor: 3}\ndata: {blend: b}", "model.num_query_groups (2) must be divisible by parallel.tensor (3)"),
    ("data: {blend: b, global_batch_size: 6, micro_batch_size: 4}", "data.global_batch_size (6) must be a multiple"),
    ("- a list", "the top level must be a mapping"),
])
def test_invalid_configs_name_the_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_override_must_be_key_equals_value():
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config(None, ["data.blend"])


def test_config_is_frozen_where_shapes_are_shared():
    with pytest.raises(dataclasses.FrozenInstanceError):
        model_preset("tiny").hidden_size = 3  # type: ignore[misc]


CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_example_configs_load(name):
    config = load_config(CONFIGS / name)
    assert config.data.global_batch_size % (config.data.micro_batch_size * config.parallel.data) == 0
    assert config.parallel.world_size in (2, 8, 16)


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*_continue.yaml")))
def test_continued_pretraining_configs_start_from_a_base_model(name):
    config = load_config(CONFIGS / name)
    assert config.init.hf and config.init_dir == Path(config.run_dir) / "init"
    assert config.model.name in {"llama3.2-1b", "llama3.2-3b", "qwen3-8b"}


@pytest.mark.parametrize(("extra", "message"), [
    ({"init": {"hf": "a", "checkpoint": "b"}}, "init: give hf or checkpoint, not both"),
    ({"init": {"checkpoint": "b"}, "checkpoint": {"load": "c"}}, "init and checkpoint.load both name a starting point"),
])
def test_init_is_one_starting_point(extra, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"data": {"blend": "b.json"}, **extra})
