from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tokenizers import Tokenizer

from grammar.errors import UnknownToken
from grammar.lexer import split_pieces
from grammar.tokenizer import GrammarTokenizer, default_tokenizer
from tests.grammar.corpus import grammar_corpus


def test_lossless_on_every_fixture_string():
    tokenizer = default_tokenizer()
    corpus = list(grammar_corpus())
    assert len(corpus) > 10_000
    assert tokenizer.decode_batch(tokenizer.encode_batch(corpus)) == corpus


def test_rust_ids_equal_the_pure_python_reference_encoder():
    tokenizer = default_tokenizer()
    ids = tokenizer.vocab.ids
    corpus = grammar_corpus()
    rust = tokenizer.encode_batch(corpus)
    assert rust == [[ids[piece] for piece in split_pieces(text)] for text in corpus]
    assert tokenizer.encode_batch(corpus, engine="python") == rust
    assert tokenizer.encode_batch(corpus[:50], special=True, engine="python") == tokenizer.encode_batch(
        corpus[:50], special=True
    )


@pytest.mark.parametrize("engine", ["rust", "python"])
@pytest.mark.parametrize(
    ("text", "position", "piece"),
    [("<MoleculeS>C C<MoleculeE>", 12, "' '"), ("<MoleculeS>[CH3:1]<MoleculeE>", 11, "'[CH3:1]'"),
     ("<ProteinS>MKJ<ProteinE>", 12, "'J'"), ("<MoleculeS><unk><MoleculeE>", 11, "'<unk>'")],
)
def test_both_engines_name_the_same_unknown_piece(engine, text, position, piece):
    results = default_tokenizer().encode_batch_results([text], engine=engine)
    assert isinstance(results[0], UnknownToken)
    assert results[0].position == position and piece in str(results[0])


def test_exported_tokenizer_json_gives_identical_ids_in_tokenizers_and_transformers(tmp_path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tokenizer = default_tokenizer()
    tokenizer.save(tmp_path)
    corpus = list(grammar_corpus())
    ours = tokenizer.encode_batch(corpus)
    reloaded = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    rust = [e.ids for e in reloaded.encode_batch(corpus, add_special_tokens=False)]
    fast = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(str(tmp_path))
    assert rust == ours
    assert fast(corpus, add_special_tokens=False)["input_ids"] == ours
    assert auto(corpus, add_special_tokens=False)["input_ids"] == ours
    assert auto(corpus[0])["input_ids"] == [tokenizer.bos_id, *ours[0]]  # a bos prefix, never an eos
    assert [auto.decode(ids) for ids in ours[:200]] == corpus[:200]
    assert GrammarTokenizer.load(tmp_path).encode_batch(corpus[:200]) == ours[:200]


def test_vocabulary_is_deterministic_across_processes():
    code = "from grammar.tokenizer import GrammarTokenizer as T; t=T.build(); print(t.content_hash, t.hf.to_str())"
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True) for _ in range(2)]
    assert runs[0].stdout == runs[1].stdout
    assert runs[0].stdout.split()[0] == default_tokenizer().content_hash


def test_vocabulary_fits_uint16_and_carries_version_and_hash(tmp_path):
    tokenizer = default_tokenizer()
    assert tokenizer.vocab_size < 65_500
    meta = json.loads((tokenizer.save(tmp_path) / "grammar_vocab.json").read_text())
    assert meta["version"] == "logos-grammar-3" and meta["content_hash"].startswith("sha256:")
    assert meta["size"] == tokenizer.vocab_size == len(meta["tokens"])


def test_tampered_vocabulary_is_refused(tmp_path):
    default_tokenizer().save(tmp_path)
    meta = json.loads((tmp_path / "grammar_vocab.json").read_text())
    meta["tokens"][100], meta["tokens"][101] = meta["tokens"][101], meta["tokens"][100]
    (tmp_path / "grammar_vocab.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="content hash"):
        GrammarTokenizer.load(tmp_path)


def test_unknown_tokens_and_ids_are_errors_with_positions():
    tokenizer = default_tokenizer()
    with pytest.raises(UnknownToken, match="at char 11") as raised:
        tokenizer.encode("<MoleculeS><Foo>C<MoleculeE>")
    assert "'<Foo>'" in str(raised.value)
    with pytest.raises(UnknownToken, match="outside the vocabulary"):
        tokenizer.decode([4, 10**6])
    results = tokenizer.encode_batch_results(["<MoleculeS>C<MoleculeE>", "<MoleculeS>C!<MoleculeE>"])
    assert isinstance(results[0], list) and isinstance(results[1], UnknownToken)
