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
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

from grammar.errors import GrammarError, UnknownToken
from grammar.lexer import TOKEN_PATTERN, TOKEN_RE, lex
from grammar.tags import BOS, EOS, PAD, SPECIAL_TOKENS, UNK
from grammar.vocab import Vocabulary, grammar_vocabulary

TOKENIZER_FILE = "tokenizer.json"
VOCAB_META_FILE = "grammar_vocab.json"


def build_hf_tokenizer(vocab: Vocabulary) -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel(vocab.ids, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(TOKEN_PATTERN), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab.ids[BOS]), (EOS, vocab.ids[EOS])]
    )
    return tokenizer


class GrammarTokenizer:
    def __init__(self, hf: Tokenizer, vocab: Vocabulary) -> None:
        self.hf = hf
        self.vocab = vocab
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (vocab.ids[t] for t in (PAD, BOS, EOS, UNK))

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

    def _check(self, text: str, encoding) -> list[int]:
        ids = encoding.ids
        if self.unk_id in ids:
            i = ids.index(self.unk_id)
            start, end = encoding.offsets[i]
            raise UnknownToken(f"{text[start:end]!r} is not in the grammar vocabulary", position=start, text=text)
        return ids

    def encode(self, text: str, *, special: bool = False) -> list[int]:
        return self._check(text, self.hf.encode(text, add_special_tokens=special))

    def encode_python(self, text: str, *, special: bool = False) -> list[int]:
        """The pure-Python engine: same pieces as the Rust path, same ids, same errors."""
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
        return [self.bos_id, *out, self.eos_id] if special else out

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

    def decode(self, ids: Sequence[int]) -> str:
        for i, token_id in enumerate(ids):
            if not 0 <= token_id < self.vocab_size:
                raise UnknownToken(f"token id {token_id} (item {i}) is outside the vocabulary of {self.vocab_size}")
        return self.hf.decode(list(ids), skip_special_tokens=True)

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> list[str]:
        return [self.decode(ids) for ids in batch]

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
        return cls(Tokenizer.from_file(str(path / TOKENIZER_FILE)), vocab)


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
