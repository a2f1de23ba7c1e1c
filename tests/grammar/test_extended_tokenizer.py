"""Extended (base LLM + grammar) and native tokenizers as LOGOS's tools load them: transformers'
``AutoTokenizer`` on the saved directory is the independent reference."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tokenizers import Tokenizer, processors

from grammar.errors import GrammarError
from grammar.hf_extend import ExtendedTokenizer, extend_hf_tokenizer
from grammar.tags import GRAMMAR_TAGS, MATERIAL_E, MOLECULE_E
from grammar.tokenizer import GrammarTokenizer, check_same_tokenizer, default_tokenizer, load_tokenizer
from tests.grammar.base_tokenizers import make_base_tokenizer
from tests.grammar.corpus import grammar_corpus

PROMPT = "<MoleculeS>CC(=O)Nc1ccc(O)cc1<MoleculeE><ReverseReact>"
STYLES = ("llama3", "qwen3")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, object]:
    """Base directories per style and the saved tokenizers: extended per style, and native."""
    root = tmp_path_factory.mktemp("tokenizers")
    out: dict[str, object] = {}
    for style in STYLES:
        base = make_base_tokenizer(style, root / f"base_{style}")
        out[f"base_{style}"] = base
        out[style] = ExtendedTokenizer.build(base).save(root / f"extended_{style}")
    out["native"] = default_tokenizer().save(root / "native")
    return out


def auto(directory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


@pytest.mark.parametrize("style", STYLES)
def test_every_grammar_tag_is_one_token_after_the_base_vocabulary(dirs, style):
    tokenizer = load_tokenizer(dirs[style])
    base = Tokenizer.from_file(str(dirs[f"base_{style}"] / "tokenizer.json"))
    base_size = base.get_vocab_size(with_added_tokens=True)
    ids = [tokenizer.token_id(tag) for tag in GRAMMAR_TAGS]
    assert len(set(ids)) == len(GRAMMAR_TAGS) and min(ids) >= base_size
    assert "<AntibodyS>" in GRAMMAR_TAGS and "<AntibodyE>" in GRAMMAR_TAGS
    reference = auto(dirs[style])
    for tag, tag_id in zip(GRAMMAR_TAGS, ids, strict=True):
        assert tokenizer.encode(tag) == [tag_id]
        assert reference.convert_tokens_to_ids(tag) == tag_id
        assert reference(tag, add_special_tokens=False)["input_ids"] == [tag_id]
    # The base's own tokens keep their ids.
    for token, token_id in base.get_vocab(with_added_tokens=True).items():
        assert tokenizer.token_id(token) == token_id
    # Crystal tokens are single, and content (kept by skip_special_tokens); tags are special.
    text = "<MaterialS><sg225><L5.64><MaterialE>"
    material_ids = reference(text, add_special_tokens=False)["input_ids"]
    assert len(material_ids) == 4
    assert reference.decode(material_ids, skip_special_tokens=True) == "<sg225><L5.64>"


@pytest.mark.parametrize("kind", [*STYLES, "native"])
def test_a_logos_prompt_has_no_eos_and_decodes_back(dirs, kind):
    reference = auto(dirs[kind])
    tokenizer = load_tokenizer(dirs[kind])
    ids = reference(PROMPT)["input_ids"]
    expected_prefix = {"llama3": ["<|begin_of_text|>"], "qwen3": [], "native": ["<bos>"]}[kind]
    prefix = reference.convert_tokens_to_ids(expected_prefix)
    assert ids[: len(prefix)] == prefix == tokenizer.prefix_ids
    assert ids[-1] == reference.convert_tokens_to_ids("<ReverseReact>")  # nothing after the prompt
    assert reference.eos_token_id not in ids
    assert ids == tokenizer.prefix_ids + tokenizer.encode(PROMPT)
    assert reference.decode(ids[len(prefix):], skip_special_tokens=False) == PROMPT
    assert tokenizer.decode(ids[len(prefix):]) == PROMPT
    for tag in (MOLECULE_E, MATERIAL_E):  # usable as generation stops
        assert len(reference(tag, add_special_tokens=False)["input_ids"]) == 1
    # A pad token exists, so left-padded batches (LOGOS's scripts) work.
    assert reference.pad_token_id == tokenizer.pad_id is not None
    reference.padding_side = "left"
    batch = reference([PROMPT, "<MaterialS>"], padding=True)["input_ids"]
    assert batch[1][0] == tokenizer.pad_id and len(batch[0]) == len(batch[1])


def test_specials_follow_the_base_layouts(dirs):
    llama_base, qwen_base = auto(dirs["base_llama3"]), auto(dirs["base_qwen3"])
    llama, qwen = load_tokenizer(dirs["llama3"]), load_tokenizer(dirs["qwen3"])
    assert llama_base.pad_token is None  # Llama-3 has none; LOGOS's scripts force <|eot_id|>
    assert llama.pad_id == llama_base.convert_tokens_to_ids("<|eot_id|>") == auto(dirs["llama3"]).pad_token_id
    assert llama.eod_id == llama_base.convert_tokens_to_ids("<|end_of_text|>")
    assert llama.bos_id == llama_base.bos_token_id
    assert qwen.bos_id is None and qwen.prefix_ids == []
    assert qwen.eod_id == qwen.pad_id == qwen_base.convert_tokens_to_ids("<|endoftext|>")
    native = load_tokenizer(dirs["native"])
    assert (native.kind, llama.kind) == ("native", "extended")
    assert native.eod_id == native.eos_id == native.token_id("<eos>") and native.prefix_ids == [native.bos_id]


@pytest.mark.parametrize("style", STYLES)
def test_ids_equal_transformers_on_every_fixture_format(dirs, style):
    tokenizer = load_tokenizer(dirs[style])
    corpus = list(grammar_corpus())
    ours = tokenizer.encode_batch(corpus)
    assert auto(dirs[style])(corpus, add_special_tokens=False)["input_ids"] == ours
    tag_ids = {tag: tokenizer.token_id(tag) for tag in GRAMMAR_TAGS}
    for text, ids in zip(corpus, ours, strict=True):
        for tag, tag_id in tag_ids.items():
            if tag in text:
                assert ids.count(tag_id) == text.count(tag)
    assert tokenizer.decode_batch(ours) == corpus


def test_content_hash_is_stable_across_processes_and_paths_and_names_its_base(dirs, tmp_path):
    code = ("import sys; from grammar.hf_extend import ExtendedTokenizer as T; "
            "print(T.build(sys.argv[1]).content_hash)")
    runs = [subprocess.run([sys.executable, "-c", code, str(dirs["base_llama3"])], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)]
    llama = load_tokenizer(dirs["llama3"]).content_hash
    assert runs[0] == runs[1] == llama + "\n"
    moved = shutil.copytree(dirs["base_llama3"], tmp_path / "elsewhere")
    assert ExtendedTokenizer.build(moved).content_hash == llama
    assert load_tokenizer(dirs["qwen3"]).content_hash != llama
    assert ExtendedTokenizer.build(moved, material_tokens=False).content_hash != llama
    assert len({llama, load_tokenizer(dirs["native"]).content_hash}) == 2


def test_loading_imports_no_chemistry_stack(dirs):
    code = ("import sys; from grammar.tokenizer import load_tokenizer; "
            "[load_tokenizer(d).encode('<MoleculeS>CCO<MoleculeE>') for d in sys.argv[1:]]; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'rdkit', 'pymatgen', 'gemmi', 'transformers'}))")
    done = subprocess.run([sys.executable, "-c", code, str(dirs["llama3"]), str(dirs["qwen3"]), str(dirs["native"])],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_base_that_appends_eos_gets_a_bos_only_post_processor(dirs, tmp_path):
    base = shutil.copytree(dirs["base_llama3"], tmp_path / "base")
    hf = Tokenizer.from_file(str(base / "tokenizer.json"))
    bos, eos = "<|begin_of_text|>", "<|end_of_text|>"
    hf.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, hf.token_to_id(bos)), (eos, hf.token_to_id(eos))])
    hf.save(str(base / "tokenizer.json"))
    extended = ExtendedTokenizer.build(base)
    assert extended.encode(PROMPT, special=True) == [hf.token_to_id(bos), *extended.encode(PROMPT)]
    assert extended.meta["post_processor"].startswith("replaced")


def test_bad_directories_are_one_line_errors(dirs, tmp_path):
    with pytest.raises(GrammarError, match="does not exist"):
        ExtendedTokenizer.build(tmp_path / "missing")
    with pytest.raises(GrammarError, match="not a logos tokenizer directory"):
        load_tokenizer(dirs["base_llama3"])
    tampered = shutil.copytree(dirs["qwen3"], tmp_path / "tampered")
    data = json.loads((tampered / "tokenizer.json").read_text())
    first, second = list(data["model"]["vocab"])[:2]
    data["model"]["vocab"][first], data["model"]["vocab"][second] = data["model"]["vocab"][second], data["model"][
        "vocab"][first]
    (tampered / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(GrammarError, match="content hash") as raised:
        load_tokenizer(tampered)
    assert "\n" not in str(raised.value)
    with pytest.raises(ValueError, match=r"tokenizer mismatch: blend\.json has sha256:a, model has sha256:b"):
        check_same_tokenizer("sha256:a", "sha256:b", first="blend.json", second="model")


def test_cli_writes_an_extended_tokenizer(dirs, tmp_path):
    from tests.grammar.test_cli import logos

    done = logos("grammar", "vocab", "--extend", str(dirs["base_qwen3"]), "--out", str(tmp_path / "x"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["content_hash"] == load_tokenizer(tmp_path / "x").content_hash
    assert load_tokenizer(tmp_path / "x").content_hash == load_tokenizer(dirs["qwen3"]).content_hash
    bad = logos("grammar", "vocab", "--extend", str(tmp_path / "missing"), "--out", str(tmp_path / "y"))
    assert bad.returncode == 2 and "does not exist" in bad.stderr and not (tmp_path / "y").exists()
    encoded = logos("grammar", "encode", "--tokenizer", str(tmp_path / "x"), stdin=PROMPT + "\n")
    assert list(map(int, encoded.stdout.split())) == load_tokenizer(dirs["qwen3"]).encode(PROMPT)


def test_extend_keeps_the_old_entry_point(dirs, tmp_path):
    meta = extend_hf_tokenizer(dirs["base_llama3"], tmp_path / "x", material_tokens=False)
    assert meta["normal_tokens"] == 0 and meta["vocab_size"] == load_tokenizer(tmp_path / "x").vocab_size
    assert isinstance(load_tokenizer(dirs["native"]), GrammarTokenizer)


AUTO_TOKENIZER_PROBE = """
import json, sys
import transformers
from transformers import AutoTokenizer
prompt, texts = sys.argv[1], json.loads(sys.argv[2])
out = {"version": transformers.__version__}
for directory in sys.argv[3:]:
    t = AutoTokenizer.from_pretrained(directory)
    ids = t(prompt)["input_ids"]
    t.padding_side = "left"
    out[directory] = {"ids": ids, "decoded": t.decode(ids, skip_special_tokens=False), "eos": t.eos_token,
                      "pad": [t.pad_token, t.pad_token_id], "texts": t(texts, add_special_tokens=False)["input_ids"],
                      "batch": t([prompt, "<MaterialS>"], padding=True)["input_ids"]}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_saved_tokenizers_load_identically_under_transformers_4_and_5(dirs, tmp_path):
    """LOGOS's scripts may run either major version: same ids, decoding, pad and left padding."""
    transformers4 = Path(__file__).resolve().parents[2] / ".venv" / "transformers4"
    assert (transformers4 / "transformers").is_dir(), \
        f"transformers 4.x is not installed in {transformers4}: run tests/training/install_transformers4.sh"
    texts = list(grammar_corpus()[::500])
    args = [sys.executable, "-c", AUTO_TOKENIZER_PROBE, PROMPT, json.dumps(texts),
            *(str(dirs[k]) for k in (*STYLES, "native"))]
    runs = {}
    for major, path in (("4", str(transformers4)), ("5", "")):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | ({"PYTHONPATH": path} if path else {})
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[major] = json.loads(done.stdout)
        assert runs[major].pop("version").startswith(f"{major}.")
    assert runs["4"] == runs["5"]
    assert runs["4"][str(dirs["llama3"])]["pad"][0] == "<|eot_id|>"
