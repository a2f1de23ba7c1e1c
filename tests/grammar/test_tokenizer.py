from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from tokenizers import Tokenizer

from grammar.errors import UnknownToken
from grammar.tokenizer import GrammarTokenizer, default_tokenizer
from tests.grammar.corpus import grammar_corpus


def test_lossless_on_every_fixture_string():
    tokenizer = default_tokenizer()
    corpus = list(grammar_corpus())
    assert len(corpus) > 10_000
    assert tokenizer.decode_batch(tokenizer.encode_batch(corpus)) == corpus


# The SMILES tokenization regex published with the Molecular Transformer (Schwaller et al., ACS Cent. Sci.
# 2019, 5, 1572; SMI_REGEX_PATTERN of its code), copied from the paper, not from grammar.lexer.
SCHWALLER_SMILES_REGEX = re.compile(
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>|\*|\$|\%[0-9]{2}|[0-9])"
)
ANGLE_TAG = re.compile(r"(<[^<>]+>)")


def reference_pieces(text: str) -> list[str]:
    """An independent tokenization: every <tag> one piece; protein residues one piece per letter (a one-letter
    pocket residue too); every SMILES (molecules, SMILES-expanded pocket residues) by the published regex,
    which must cover it entirely."""
    pieces: list[str] = []
    in_protein = in_pocket = False
    for part in ANGLE_TAG.split(text):
        if not part:
            continue
        if ANGLE_TAG.fullmatch(part):
            pieces.append(part)
            in_protein = {"<ProteinS>": True, "<ProteinE>": False}.get(part, in_protein)
            in_pocket = {"<PocketS>": True, "<PocketE>": False}.get(part, in_pocket)
        elif in_protein and (not in_pocket or len(part) == 1):
            pieces += list(part)
        else:
            smiles = SCHWALLER_SMILES_REGEX.findall(part)
            assert "".join(smiles) == part, f"the published SMILES regex does not cover {part!r}"
            pieces += smiles
    return pieces


def test_rust_ids_equal_an_independent_reference_tokenization():
    tokenizer = default_tokenizer()
    ids = tokenizer.vocab.ids
    corpus = grammar_corpus()
    rust = tokenizer.encode_batch(corpus)
    assert rust == [[ids[piece] for piece in reference_pieces(text)] for text in corpus]
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


def test_sequence_records_take_the_letter_path_with_the_rust_engines_ids_and_errors():
    """Proteins, antibodies and marked pockets (tags + upper-case runs) skip the lexer's regex in the Python
    engine; the Rust engine (HF tokenizers, its own pre-tokenizer) is the reference for ids and for errors."""
    import random

    from Bio import SeqIO

    tokenizer = default_tokenizer()
    assert not [t for t in tokenizer.vocab.ids if re.fullmatch("[A-Z]{2,}", t)]  # what the letter path relies on
    fasta = "tests/data/uniprot/uniprotkb_UP000000429_Hpylori26695_proteome_first1100.fasta"
    sequences = [str(record.seq).replace("U", "X") for record in SeqIO.parse(fasta, "fasta")][:300]
    texts = [f"<ProteinS>{s}<ProteinE>" for s in sequences]
    texts += ["<AntibodyS><ProteinS>QV<CdrS>GFT<CdrE>W<ProteinE><ProteinS><ProteinE><AntibodyE>",
              "<ProteinS>MK<PocketS>V<PocketE>L<ProteinE>", ""]
    rng = random.Random(7)
    texts += ["<ProteinS>" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(30)) + "<ProteinE>"
              for _ in range(300)]  # B, J, Z are not residues: both engines must refuse them at the same place

    def outcome(engine: str, text: str) -> list[int] | tuple[str, int | None]:
        try:
            return tokenizer.encode_batch(
                [text], engine=engine)[0]
        except UnknownToken as exc:
            return ("unknown", exc.position)

    results = [(outcome("python", t), outcome("rust", t)) for t in texts]
    assert all(python == rust for python, rust in results)
    assert sum(isinstance(p, tuple) for p, _ in results) > 100  # the error path was exercised
