"""The grammar tokenizer: an HF ``tokenizers`` WordLevel model over the grammar vocabulary.

Pre-tokenization is ``grammar.lexer.TOKEN_PATTERN`` (isolated splits), the decoder fuses tokens
without separators, so ``decode(encode(text)) == text`` for every grammar string. Batch encoding runs
in Rust by default (``encode_batch``, parallel over cores); any piece not in the vocabulary is an
``UnknownToken`` error with its character offset rather than a silent ``<unk>``.

A second engine, ``engine="python"``, encodes with the same regular expression in CPython's ``re`` and
a dict lookup. It gives identical ids (tested on every fixture string) and, measured by
``benchmarks/bench_tokenizer.py``, is several times faster per core than the Rust path here: HF
tokenizers spends ~0.5 µs per token on split/offset bookkeeping, which a one-token-per-piece
vocabulary cannot amortize. Pipelines whose hot loop is tokenization can choose it.

Two kinds of tokenizer share one interface (``LogosTokenizer``): ``native`` (this module's
``GrammarTokenizer``) and ``extended`` (``grammar.hf_extend.ExtendedTokenizer``: a base LLM tokenizer
plus the grammar's tags). ``load_tokenizer(directory)`` reads either from a saved directory, telling
them apart by their metadata file, and imports no chemistry stack (RDKit, pymatgen, gemmi): training
ranks and GPU boxes load tokenizers with only ``tokenizers`` installed.

Layout shared by both kinds: ``tokenizer(prompt)`` in transformers (``add_special_tokens=True``) gives
``prefix_ids + encode(prompt)``: the saved post-processor adds at most a bos prefix and never an eos,
so a prompt never reads "document over". A Megatron training document is
``prefix_ids + encode(text) + [eod_id]``: training and inference start the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

from grammar.errors import GrammarError, UnknownToken
from grammar.lexer import TOKEN_PATTERN, TOKEN_RE, lex
from grammar.tags import BOS, EOS, PAD, SPECIAL_TOKENS, UNK
from grammar.vocab import Vocabulary, grammar_vocabulary

# Texts of tags and upper-case letters only (protein-like records): see GrammarTokenizer._encode_letters_and_tags.
LETTERS_AND_TAGS = re.compile(r"(?:<[A-Za-z][^<>\s]*+>|[A-Z])*+")
TAG_SPLIT = re.compile(r"(<[A-Za-z][^<>\s]*>)")
TOKENIZER_FILE = "tokenizer.json"
VOCAB_META_FILE = "grammar_vocab.json"
EXTENSION_META_FILE = "logos_extension.json"  # written by grammar.hf_extend.ExtendedTokenizer


class LogosTokenizer(Protocol):
    """What every consumer of a dataset's tokenizer may rely on, for either kind."""

    kind: str  # "native" | "extended"
    bos_id: int | None
    eod_id: int  # ends every Megatron document
    pad_id: int
    prefix_ids: list[int]  # what add_special_tokens=True prepends ([bos] or [])

    @property
    def vocab_size(self) -> int: ...
    @property
    def content_hash(self) -> str: ...
    def encode(self, text: str) -> list[int]: ...
    def encode_batch_results(self, texts: Sequence[str], *, engine: str = "rust") -> list[list[int] | GrammarError]:
        ...
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str: ...
    def token_id(self, token: str) -> int: ...
    def save(self, directory: str | Path) -> Path: ...


class TokenizerMismatch(GrammarError):
    """Two things that must share a tokenizer (a blend and a model, two dataset inputs) do not."""

    reason_code = "tokenizer_mismatch"


def check_same_tokenizer(first_hash: str, second_hash: str, *, first: str, second: str) -> None:
    """Raise a one-line ``TokenizerMismatch`` naming both sides unless the two content hashes are equal.

    ``first``/``second`` say whose hash each is (a file or dataset), e.g. ``first="blend.json"``.
    """
    if first_hash != second_hash:
        raise TokenizerMismatch(f"tokenizer mismatch: {first} has {first_hash}, {second} has {second_hash}")


def load_tokenizer(directory: str | Path) -> LogosTokenizer:
    """A saved tokenizer of either kind; the kind comes from the metadata file the directory carries."""
    path = Path(directory)
    if (path / VOCAB_META_FILE).is_file():
        return GrammarTokenizer.load(path)
    if (path / EXTENSION_META_FILE).is_file():
        from grammar.hf_extend import ExtendedTokenizer

        return ExtendedTokenizer.load(path)
    if not path.is_dir():
        raise GrammarError(f"{path}: tokenizer directory does not exist")
    raise GrammarError(f"{path}: not a logos tokenizer directory (neither {VOCAB_META_FILE} nor {EXTENSION_META_FILE})")


def build_hf_tokenizer(vocab: Vocabulary) -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel(vocab.ids, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(TOKEN_PATTERN), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.post_processor = bos_prefix(vocab)
    return tokenizer


def bos_prefix(vocab: Vocabulary) -> processors.TemplateProcessing:
    """``<bos>`` before the text and nothing after it (see the module docstring for why)."""
    return processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab.ids[BOS])])


class HFDecoding:
    """Decoding shared by both tokenizer kinds: ids are range-checked first (the HF decoder would skip
    an unknown id silently), special tokens are kept unless asked otherwise (answers are cut between tags)."""

    hf: Tokenizer
    vocab_size: int

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        for i, token_id in enumerate(ids):
            if not 0 <= token_id < self.vocab_size:
                raise UnknownToken(f"token id {token_id} (item {i}) is outside the vocabulary of {self.vocab_size}")
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> list[str]:
        return [self.decode(ids) for ids in batch]


class GrammarTokenizer(HFDecoding):
    """The native kind: the grammar vocabulary, one token per grammar piece."""

    kind = "native"

    def __init__(self, hf: Tokenizer, vocab: Vocabulary) -> None:
        self.hf = hf
        self.vocab = vocab
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (vocab.ids[t] for t in (PAD, BOS, EOS, UNK))
        self.eod_id = self.eos_id  # the document end; eos_id is the older name
        self.prefix_ids = [self.bos_id]

    def _encode_letters_and_tags(self, text: str) -> list[int] | None:
        """Sequence records (proteins, antibodies, marked pockets) are tags and runs of upper-case letters, and
        the lexer's pieces of an upper-case run are its single letters (no vocabulary piece is two upper-case
        letters: ``tests/grammar/test_tokenizer.py`` checks it), so each letter is looked up directly instead of
        through the lexer's regex: ~10x less time per residue. None when a piece is not in the vocabulary (the
        general path then raises the usual error at its position)."""
        ids = self.vocab.ids
        out: list[int] = []
        try:
            for piece in TAG_SPLIT.split(text):
                if piece.startswith("<"):
                    out.append(ids[piece])
                elif piece:
                    out += [ids[letter] for letter in piece]
        except KeyError:
            return None
        return out if self.unk_id not in out else None

    @classmethod
    def build(cls, vocab: Vocabulary | None = None) -> GrammarTokenizer:
        vocab = vocab or grammar_vocabulary()
        return cls(build_hf_tokenizer(vocab), vocab)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def content_hash(self) -> str:
        return self.vocab.content_hash

    def token_id(self, token: str) -> int:
        if token not in self.vocab.ids:
            raise UnknownToken(f"{token!r} is not in the grammar vocabulary")
        return self.vocab.ids[token]

    def _check(self, text: str, encoding) -> list[int]:
        ids = encoding.ids
        if self.unk_id in ids:
            i = ids.index(self.unk_id)
            start, end = encoding.offsets[i]
            raise UnknownToken(f"{text[start:end]!r} is not in the grammar vocabulary", position=start, text=text)
        return ids

    def encode(self, text: str, *, special: bool = False) -> list[int]:
        """Ids of ``text``; ``special`` adds ``prefix_ids`` (what transformers' add_special_tokens adds)."""
        return self._check(text, self.hf.encode(text, add_special_tokens=special))

    def encode_python(self, text: str, *, special: bool = False) -> list[int]:
        """The pure-Python engine: same pieces as the Rust path, same ids, same errors."""
        if LETTERS_AND_TAGS.fullmatch(text) and (out := self._encode_letters_and_tags(text)) is not None:
            return [*self.prefix_ids, *out] if special else out
        pieces = TOKEN_RE.findall(text)
        ids = self.vocab.ids
        try:
            out = [ids[piece] for piece in pieces]
        except KeyError:
            out = [self.unk_id]
        if self.unk_id in out or sum(map(len, pieces)) != len(text):
            for token in lex(text):  # raises UnknownToken at an uncovered character
                if token.text not in ids or ids[token.text] == self.unk_id:
                    raise UnknownToken(
                        f"{token.text!r} is not in the grammar vocabulary", position=token.start, text=text
                    )
        return [*self.prefix_ids, *out] if special else out

    def encode_batch(self, texts: Sequence[str], *, special: bool = False, engine: str = "rust") -> list[list[int]]:
        if engine == "python":
            return [self.encode_python(t, special=special) for t in texts]
        encodings = self.hf.encode_batch(list(texts), add_special_tokens=special)
        return [self._check(t, e) for t, e in zip(texts, encodings, strict=True)]

    def encode_batch_results(
        self, texts: Sequence[str], *, special: bool = False, engine: str = "rust"
    ) -> list[list[int] | GrammarError]:
        """Like ``encode_batch`` but one bad text yields its error in place instead of failing the batch."""
        if engine == "python":
            return [_captured(self.encode_python, t, special=special) for t in texts]
        encodings = self.hf.encode_batch(list(texts), add_special_tokens=special)
        return [_captured(self._check, t, e) for t, e in zip(texts, encodings, strict=True)]

    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json`` plus the files transformers' ``AutoTokenizer`` needs."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.hf.save(str(out / TOKENIZER_FILE))
        meta = self.vocab.metadata() | {"tokens": list(self.vocab.tokens)}
        (out / VOCAB_META_FILE).write_text(json.dumps(meta, indent=1))
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": UNK,
            "clean_up_tokenization_spaces": False,
            "model_max_length": 1 << 20,
            "logos_grammar_version": self.vocab.version,
            "logos_grammar_hash": self.vocab.content_hash,
        }
        (out / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
        special_map = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": UNK}
        (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=1))
        return out

    @classmethod
    def load(cls, directory: str | Path) -> GrammarTokenizer:
        """Load a saved tokenizer; the vocabulary must hash to what its metadata says."""
        path = Path(directory)
        meta = json.loads((path / VOCAB_META_FILE).read_text())
        vocab = Vocabulary(groups=(("saved", tuple(meta["tokens"])),), version=meta["version"])
        if vocab.content_hash != meta["content_hash"]:
            raise GrammarError(f"{path / VOCAB_META_FILE}: token list does not match its content hash")
        hf = Tokenizer.from_file(str(path / TOKENIZER_FILE))
        hf.post_processor = bos_prefix(vocab)  # directories saved before the bos-only layout appended <eos>
        return cls(hf, vocab)


def _captured(encode, *args, **kwargs) -> list[int] | GrammarError:
    try:
        return encode(*args, **kwargs)
    except GrammarError as exc:
        return exc


_DEFAULT: GrammarTokenizer | None = None


def default_tokenizer() -> GrammarTokenizer:
    """The process-wide tokenizer over the built-in vocabulary (built once, ~1 s)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = GrammarTokenizer.build()
    return _DEFAULT
