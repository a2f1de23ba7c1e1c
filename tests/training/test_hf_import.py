"""HF import and the round trip back: tiny random transformers models (Llama-3.2-style and Qwen3-style,
``tests/training/hf_models.py``) become Megatron checkpoints whose logits are transformers' logits, and
come back out of ``logos export hf`` as the same models, loadable under transformers 4.x and 5.x."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.training.helpers import REPO, run_logos
from tests.training.hf_models import hf_logits, make_hf_model
from tests.training.transformers_logits import PROMPT

TRANSFORMERS4 = REPO / ".venv" / "transformers4"
# Ids that touch specials and ordinary BPE pieces of both tiny vocabularies (all < 1218).
IDS = [[5, 17, 300, 1200, 42, 99, 7, 1000, 3, 64, 1201, 12, 640, 1100, 2, 811]]
# name -> (model kind, tensor, pipeline)
IMPORTS = {"llama_tp1": ("llama_sharded", 1, 1), "llama_pp2": ("llama", 1, 2), "qwen3_tp2": ("qwen3", 2, 1)}


def megatron_logits(out: Path, checkpoints: list[Path]) -> dict[str, torch.Tensor]:
    ids_path = out / "ids.json"
    ids_path.write_text(json.dumps(IDS))
    logits_path = out / "megatron_logits.pt"
    done = subprocess.run([sys.executable, "tests/training/megatron_logits.py", str(logits_path), str(ids_path),
                           *map(str, checkpoints)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(logits_path)


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("hf_models")
    models = {kind: make_hf_model(kind, out / kind) for kind in ("llama", "qwen3")}
    # The same weights in several safetensors files with an index (model.safetensors.index.json).
    models["llama_sharded"] = make_hf_model("llama", out / "llama_sharded", max_shard_size="100KB")
    assert len(list(models["llama_sharded"].glob("model-*.safetensors"))) > 1
    return models


@pytest.fixture(scope="module")
def imported(hf_dirs, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("imported")
    checkpoints = {}
    for name, (kind, tensor, pipeline) in IMPORTS.items():
        done = run_logos("import", "hf", str(hf_dirs[kind]), "--out", str(out / name), "--tensor", str(tensor),
                         "--pipeline", str(pipeline), timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.strip() == str(out / name)
        checkpoints[name] = out / name
    return checkpoints


@pytest.mark.slow
def test_imported_checkpoints_have_transformers_logits(hf_dirs, imported, tmp_path):
    """Megatron (TP=1 model loaded from each checkpoint) against transformers on the original weights,
    for imports written by one process (from sharded safetensors) and by two worker processes (PP=2:
    each stage its own layers; TP=2: every tensor split, fused QKV per query group, SwiGLU per half).
    """
    logits = megatron_logits(tmp_path, list(imported.values()))
    for name, (kind, _, _) in IMPORTS.items():
        reference = hf_logits(hf_dirs[kind], torch.tensor(IDS))
        ours = logits[str(imported[name])]
        assert ours.shape == reference.shape, name
        assert (ours - reference).abs().max() <= 1e-4, name
        assert reference.std(dim=-1).min() > 0.5  # informative logits, not near-constant ones


@pytest.mark.slow
def test_megatron_at_tp2_has_transformers_logits(hf_dirs, imported, tmp_path):
    """The imports loaded and run at TP=2 (two ranks, vocabulary-parallel logits gathered)."""
    names = ["llama_tp1", "qwen3_tp2"]
    ids_path, out = tmp_path / "ids.json", tmp_path / "tp2_logits.pt"
    ids_path.write_text(json.dumps(IDS))
    done = subprocess.run([sys.executable, "tests/training/megatron_logits_tp.py", str(out), str(ids_path), "2",
                           *(str(imported[n]) for n in names)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = torch.load(out)
    for name in names:
        result, reference = results[str(imported[name])], hf_logits(hf_dirs[IMPORTS[name][0]], torch.tensor(IDS))
        padded = -(-reference.shape[-1] // 128) * 128  # model.make_vocab_size_divisible_by
        assert result["shard_columns"] == padded // 2  # each rank computed half the (padded) vocabulary
        assert result["logits"].shape == reference.shape
        assert (result["logits"] - reference).abs().max() <= 1e-4, name


@pytest.mark.slow
def test_imported_checkpoint_layout(imported):
    root = imported["qwen3_tp2"]
    assert (root / "latest").read_text() == "0"
    meta = json.loads((root / "iter_0000000" / "logos_meta.json").read_text())
    assert meta["step"] == 0 and meta["weights_only"] and meta["vocab_size"] == 1268
    assert meta["config"]["model"]["qk_layernorm"] and not meta["config"]["model"]["tie_embeddings"]
    assert meta["config"]["model"]["max_position_embeddings"] == 40960
    assert (root / "tokenizer" / "tokenizer.json").is_file() and (root / "tokenizer" / "vocab.json").is_file()
    assert not list(root.parent.glob(".*import-*")), "temporary import directories were left behind"


@pytest.fixture(scope="module")
def exported(imported, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("exported")
    result = {}
    for name in ("llama_pp2", "qwen3_tp2"):
        done = run_logos("export", "hf", str(imported[name]), "--out", str(out / name), timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        result[name] = out / name
    return result


@pytest.mark.slow
def test_round_trip_gives_the_original_logits(hf_dirs, exported):
    for name, kind in (("llama_pp2", "llama"), ("qwen3_tp2", "qwen3")):
        original = hf_logits(hf_dirs[kind], torch.tensor(IDS))
        again = hf_logits(exported[name], torch.tensor(IDS))
        assert torch.allclose(again, original, atol=1e-5, rtol=0), name


@pytest.mark.slow
def test_export_config_keeps_the_base_model(hf_dirs, exported):
    for name, kind in (("llama_pp2", "llama"), ("qwen3_tp2", "qwen3")):
        base = json.loads((hf_dirs[kind] / "config.json").read_text())
        config = json.loads((exported[name] / "config.json").read_text())
        for key in ("architectures", "max_position_embeddings", "tie_word_embeddings", "rms_norm_eps",
                    "num_key_value_heads", "head_dim", "vocab_size", "rope_parameters"):
            assert config[key] == base[key], (name, key)
        # transformers 4.x keys for the same RoPE
        assert config["rope_theta"] == base["rope_parameters"]["rope_theta"]
        scaling = {k: v for k, v in base["rope_parameters"].items() if k != "rope_theta"}
        assert config["rope_scaling"] == (scaling if scaling["rope_type"] != "default" else None)


def _load_in_subprocess(model_dir: Path, tmp: Path, transformers4: bool) -> dict:
    ids_path, out = tmp / "ids.json", tmp / f"loaded_{model_dir.name}_{int(transformers4)}.pt"
    ids_path.write_text(json.dumps(IDS))
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if transformers4:
        env["PYTHONPATH"] = str(TRANSFORMERS4)
    done = subprocess.run([sys.executable, str(REPO / "tests/training/transformers_logits.py"), str(model_dir),
                           str(ids_path), str(out)], cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out)


@pytest.fixture(scope="module")
def loaded(exported, tmp_path_factory) -> dict[tuple[str, int], dict]:
    """Each export as transformers 5.x (the venv) and 4.x (``.venv/transformers4``) load it."""
    assert (TRANSFORMERS4 / "transformers").is_dir(), \
        f"transformers 4.x is not installed in {TRANSFORMERS4}: run tests/training/install_transformers4.sh"
    tmp = tmp_path_factory.mktemp("loaded")
    return {(name, major): _load_in_subprocess(directory, tmp, transformers4=major == 4)
            for name, directory in exported.items() for major in (4, 5)}


@pytest.mark.slow
def test_export_loads_identically_under_transformers_4_and_5(exported, loaded):
    for name in exported:
        v5, v4 = loaded[name, 5], loaded[name, 4]
        assert v5["version"].startswith("5.") and v4["version"].startswith("4."), (v5["version"], v4["version"])
        assert v4["architecture"] == v5["architecture"]
        assert torch.equal(v4["inv_freq"], v5["inv_freq"]), name  # the same RoPE, scaling included
        assert torch.allclose(v4["logits"], v5["logits"], atol=1e-5, rtol=0), name
        assert v4["special_ids"] == v5["special_ids"] and v4["config_special_ids"] == v5["config_special_ids"]
        assert v4["tied"] == v5["tied"] == name.startswith("llama")


@pytest.mark.slow
def test_transformers_4_needs_the_4x_rope_keys(exported, loaded, tmp_path):
    """The control for the test above: without ``rope_theta``/``rope_scaling`` 4.x loads another RoPE."""
    import shutil

    stripped = tmp_path / "stripped"
    shutil.copytree(exported["llama_pp2"], stripped)
    config = json.loads((stripped / "config.json").read_text())
    del config["rope_theta"], config["rope_scaling"]
    (stripped / "config.json").write_text(json.dumps(config))
    v4 = _load_in_subprocess(stripped, tmp_path, transformers4=True)
    assert not torch.equal(v4["inv_freq"], loaded["llama_pp2", 5]["inv_freq"])


# --- an extended tokenizer: the embedding grows, new rows start at the mean --------------------------

# bos, eod (= eos) and pad of each extended base: Llama-3 keeps <|eot_id|> as pad (LOGOS's setting),
# Qwen3 has no bos and pads with <|endoftext|>.
SPECIALS = {"llama": ("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"),
            "qwen3": (None, "<|endoftext|>", "<|endoftext|>")}


@pytest.fixture(scope="module", params=["llama", "qwen3"])
def extended(request, hf_dirs, tmp_path_factory) -> dict:
    """A base model imported with its tokenizer extended by the grammar, then exported."""
    from grammar.hf_extend import ExtendedTokenizer

    kind = request.param
    out = tmp_path_factory.mktemp(f"extended_{kind}")
    tokenizer = ExtendedTokenizer.build(hf_dirs[kind]).save(out / "tokenizer")
    done = run_logos("import", "hf", str(hf_dirs[kind]), "--out", str(out / "checkpoint"),
                     "--tokenizer", str(tokenizer), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_logos("export", "hf", str(out / "checkpoint"), "--out", str(out / "hf"), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"kind": kind, "tokenizer": tokenizer, "checkpoint": out / "checkpoint", "hf": out / "hf"}


@pytest.mark.slow
def test_extended_import_grows_the_embedding_from_the_mean(hf_dirs, extended):
    from safetensors.torch import load_file
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    from grammar.tokenizer import load_tokenizer

    kind = extended["kind"]
    tokenizer = load_tokenizer(extended["tokenizer"])
    base = Tokenizer.from_file(str(hf_dirs[kind] / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    assert tokenizer.vocab_size > base
    meta = json.loads((extended["checkpoint"] / "iter_0000000" / "logos_meta.json").read_text())
    assert meta["vocab_size"] == tokenizer.vocab_size
    assert meta["lineage"]["tokenizer_hash"] == tokenizer.content_hash
    original = load_file(hf_dirs[kind] / "model.safetensors")
    model = AutoModelForCausalLM.from_pretrained(extended["hf"], dtype=torch.float32).eval()
    layers = {"model.embed_tokens.weight": model.model.embed_tokens.weight}
    if kind == "qwen3":  # untied: the output layer grows the same way, from its own mean
        layers["lm_head.weight"] = model.lm_head.weight
    for name, weight in layers.items():
        rows, source = weight.detach(), original[name]
        assert rows.shape[0] == tokenizer.vocab_size
        assert torch.equal(rows[:base], source[:base])
        # New tokens start at the mean of the base tokens' rows (Qwen3's unused padding rows excluded).
        mean = source[:base].mean(dim=0)
        assert torch.allclose(rows[base:], mean.expand(tokenizer.vocab_size - base, -1), atol=1e-6), name
    # Base tokens predict exactly what the base model predicted over the base vocabulary.
    with torch.no_grad():
        logits = model(torch.tensor(IDS)).logits
    reference = hf_logits(hf_dirs[kind], torch.tensor(IDS))
    assert torch.allclose(logits[..., :base], reference[..., :base], atol=1e-4, rtol=0)


@pytest.mark.slow
def test_extended_export_carries_the_tokenizer_and_its_special_ids(extended):
    from transformers import AutoTokenizer

    from grammar.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(extended["tokenizer"])
    for name in os.listdir(extended["tokenizer"]):
        assert (extended["hf"] / name).read_bytes() == (extended["tokenizer"] / name).read_bytes(), name
    config = json.loads((extended["hf"] / "config.json").read_text())
    generation = json.loads((extended["hf"] / "generation_config.json").read_text())
    auto = AutoTokenizer.from_pretrained(extended["hf"])
    expected = [auto.convert_tokens_to_ids(t) if t else None for t in SPECIALS[extended["kind"]]]
    assert [tokenizer.bos_id, tokenizer.eod_id, tokenizer.pad_id] == expected
    assert [auto.bos_token_id, auto.eos_token_id, auto.pad_token_id] == expected
    assert config["bos_token_id"] == expected[0] and generation.get("bos_token_id") == expected[0]
    for source in (config, generation):
        assert [source["eos_token_id"], source["pad_token_id"]] == expected[1:]
    # A LOGOS-style prompt: at most a bos prefix, no eos suffix, and it decodes back to itself.
    ids = auto(PROMPT)["input_ids"]
    prefix = [expected[0]] if expected[0] is not None else []
    assert ids[: len(prefix)] == prefix and ids[-1] == auto.convert_tokens_to_ids("<ReverseReact>")
    assert auto.decode(ids[len(prefix):], skip_special_tokens=False) == PROMPT


@pytest.mark.slow
def test_extended_export_reads_the_same_under_transformers_4_and_5(extended, tmp_path):
    """LOGOS's scripts may run either major: same logits, same prompt ids (at most a bos prefix, no eos),
    same text."""
    assert (TRANSFORMERS4 / "transformers").is_dir(), \
        f"transformers 4.x is not installed in {TRANSFORMERS4}: run tests/training/install_transformers4.sh"
    v5 = _load_in_subprocess(extended["hf"], tmp_path, transformers4=False)
    v4 = _load_in_subprocess(extended["hf"], tmp_path, transformers4=True)
    assert v4["version"].startswith("4.") and v5["version"].startswith("5.")
    assert torch.allclose(v4["logits"], v5["logits"], atol=1e-5, rtol=0)
    assert v4["prompt_ids"] == v5["prompt_ids"] and v4["special_ids"] == v5["special_ids"]
    assert v4["prompt_ids"][-1] != v4["special_ids"][1]
    bos = SPECIALS[extended["kind"]][0] or ""
    assert v4["prompt_decoded"] == v5["prompt_decoded"] == bos + PROMPT


# --- bad input: one line naming the file and the mismatch, exit code 2, nothing written -----------------


def _import_fails(capsys, out: Path, *args: str) -> str:
    from workflows.cli import main

    assert main(["import", "hf", *args, "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error, error
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*")), "something was written"
    return error


def _copy_model(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def _edit_config(directory: Path, **changes) -> None:
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))


def test_another_architecture_is_refused(hf_dirs, tmp_path, capsys):
    model = _copy_model(hf_dirs["llama"], tmp_path / "mistral")
    _edit_config(model, architectures=["MistralForCausalLM"])
    error = _import_fails(capsys, tmp_path / "out", str(model))
    assert str(model / "config.json") in error and "MistralForCausalLM" in error


def test_unsupported_llama3_rope_values_are_refused(hf_dirs, tmp_path, capsys):
    model = _copy_model(hf_dirs["llama"], tmp_path / "rope")
    config = json.loads((model / "config.json").read_text())
    _edit_config(model, rope_parameters=config["rope_parameters"] | {"low_freq_factor": 2.0})
    error = _import_fails(capsys, tmp_path / "out", str(model))
    assert "rope_parameters.low_freq_factor" in error and str(model / "config.json") in error


def test_a_missing_tensor_is_named(hf_dirs, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    model = _copy_model(hf_dirs["qwen3"], tmp_path / "partial")
    weights = load_file(model / "model.safetensors")
    del weights["model.layers.1.self_attn.k_norm.weight"]
    save_file(weights, model / "model.safetensors")
    error = _import_fails(capsys, tmp_path / "out", str(model))
    assert "model.layers.1.self_attn.k_norm.weight" in error and "missing" in error


def test_a_tokenizer_smaller_than_the_models_is_refused(hf_dirs, tmp_path, capsys):
    from tests.grammar.base_tokenizers import make_base_tokenizer

    small = make_base_tokenizer("llama3", tmp_path / "small", reserved=10)
    error = _import_fails(capsys, tmp_path / "out", str(hf_dirs["llama"]), "--tokenizer", str(small))
    assert str(small / "tokenizer.json") in error and "fewer than" in error


def test_a_tokenizer_extending_another_base_is_refused(hf_dirs, tmp_path, capsys):
    from grammar.hf_extend import ExtendedTokenizer

    other = ExtendedTokenizer.build(hf_dirs["qwen3"]).save(tmp_path / "qwen_extended")
    error = _import_fails(capsys, tmp_path / "out", str(hf_dirs["llama"]), "--tokenizer", str(other))
    assert "not an extension of the model's tokenizer" in error
    assert str(other / "tokenizer.json") in error and str(hf_dirs["llama"] / "tokenizer.json") in error


def test_a_layout_the_model_cannot_split_is_refused(hf_dirs, tmp_path, capsys):
    error = _import_fails(capsys, tmp_path / "out", str(hf_dirs["llama"]), "--tensor", "3")
    assert "--tensor 3" in error


# --- config.json -> ModelConfig, against the published base models ------------------------------------

# The config.json files published with meta-llama/Llama-3.2-1B and Qwen/Qwen3-8B (transformers 4.x
# spelling: rope_theta + rope_scaling), minus keys that do not describe the shape.
LLAMA_3_2_1B_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "bos_token_id": 128000, "eos_token_id": 128001,
    "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192,
    "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama", "num_attention_heads": 32,
    "num_hidden_layers": 16, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": True, "vocab_size": 128256,
}
LLAMA_3_2_3B_CONFIG = LLAMA_3_2_1B_CONFIG | {  # meta-llama/Llama-3.2-3B differs in these keys
    "head_dim": 128, "hidden_size": 3072, "num_attention_heads": 24, "num_hidden_layers": 28}
QWEN3_8B_CONFIG = {
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "bos_token_id": 151643, "eos_token_id": 151645,
    "head_dim": 128, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 12288,
    "max_position_embeddings": 40960, "max_window_layers": 36, "model_type": "qwen3", "num_attention_heads": 32,
    "num_hidden_layers": 36, "num_key_value_heads": 8, "rms_norm_eps": 1e-06, "rope_scaling": None,
    "rope_theta": 1000000, "sliding_window": None, "tie_word_embeddings": False, "use_sliding_window": False,
    "vocab_size": 151936,
}


@pytest.mark.parametrize(("config", "preset"), [(LLAMA_3_2_1B_CONFIG, "1b"), (LLAMA_3_2_3B_CONFIG, "3b"),
                                                   (QWEN3_8B_CONFIG, "8b")])
def test_published_configs_map_to_the_presets(config, preset):
    from training.hf_mapping import model_config_from_hf
    from training.presets import model_preset

    expected = model_preset(preset)
    assert model_config_from_hf(config, "config.json", name=expected.name) == expected
