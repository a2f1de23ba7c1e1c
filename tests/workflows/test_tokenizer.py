"""The workflow's ``tokenizer:`` section: checked, resolved to a saved directory, used by ingest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from grammar.hf_extend import ExtendedTokenizer
from grammar.tokenizer import default_tokenizer, load_tokenizer
from pipeline.options import ConfigError
from tests.grammar.base_tokenizers import make_base_tokenizer
from workflows.config import load_workflow
from workflows.tokenizer import resolve_tokenizer

DATA = Path(__file__).resolve().parents[1] / "data"


def _workflow(tmp_path: Path, tokenizer: dict) -> Path:
    """A one-source workflow file next to a Llama-3-style base tokenizer (named relative to the file)."""
    make_base_tokenizer("llama3", tmp_path / "base_llama")
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tok", "home": str(tmp_path / "home"), "targets": ["ingested"], "tokenizer": tokenizer,
        "ingest": {"sources": {"chembl": {"inputs": [str(DATA / "chembl/chembl_30_chemreps_100.txt")]}}},
    }))
    return path


@pytest.mark.parametrize(("override", "message"), [
    ("tokenizer.kind=extended", "tokenizer.base: an extended tokenizer needs"),
    ("tokenizer.kind=sentencepiece", "tokenizer.kind: must be one of native, extended"),
    ("tokenizer.base=somewhere", "tokenizer.base: only an extended tokenizer has a base"),
    ("tokenizer.bas=x", "unknown config key tokenizer.bas"),
])
def test_bad_tokenizer_sections_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_workflow("demo", [override])


def test_sections_resolve_to_saved_directories_named_by_hash(tmp_path):
    loaded = load_workflow(str(_workflow(tmp_path, {"kind": "extended", "base": "base_llama"})))
    home = tmp_path / "home"
    extended = resolve_tokenizer(loaded.config.tokenizer, loaded.base_dir, home)
    expected = ExtendedTokenizer.build(tmp_path / "base_llama").content_hash
    assert load_tokenizer(extended).content_hash == expected
    assert Path(extended).parent == home / "tokenizers" and expected.removeprefix("sha256:").startswith(
        Path(extended).name)
    assert resolve_tokenizer(loaded.config.tokenizer, loaded.base_dir, home) == extended  # found, not rebuilt
    native = load_workflow(str(_workflow(tmp_path, {"kind": "native"})))
    native_dir = resolve_tokenizer(native.config.tokenizer, native.base_dir, home)
    assert load_tokenizer(native_dir).content_hash == default_tokenizer().content_hash
    missing = load_workflow(str(_workflow(tmp_path, {"kind": "extended", "base": "nowhere"})))
    with pytest.raises(ConfigError, match=r"tokenizer\.base: .*nowhere: base tokenizer directory does not exist"):
        resolve_tokenizer(missing.config.tokenizer, missing.base_dir, home)


@pytest.mark.slow
def test_a_workflow_ingests_with_its_extended_tokenizer(tmp_path):
    from workflows.runner import run_workflow

    outcome = run_workflow(str(_workflow(tmp_path, {"kind": "extended", "base": "base_llama"})))
    [shards] = outcome.results["ingested"]
    summary = json.loads((Path(shards.uri) / "summary.json").read_text())
    expected = ExtendedTokenizer.build(tmp_path / "base_llama")
    assert summary["tokenizer"]["kind"] == "extended"
    assert summary["tokenizer"]["content_hash"] == expected.content_hash
    assert load_tokenizer(Path(shards.uri) / "tokenizer").content_hash == expected.content_hash
