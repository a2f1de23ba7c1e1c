"""The extended tokenizer: a base LLM tokenizer (Llama-3, Qwen3, ...) plus the shared grammar, LOGOS's way.

LOGOS continued Llama-3.2 and Qwen3 with the grammar's tags added to their tokenizers. Which grammar
tokens become single tokens here, and why:

- **Tags and task tokens** (``grammar.tags.GRAMMAR_TAGS``: ``<MoleculeS>`` ... ``<AntibodyE>``,
  ``<React>``, ``<ReverseReact>``, ``<Search>``, ``<Trans>``): added *special* tokens, one id each, never
  split, never normalized. This is what LOGOS did, and its tools depend on it: answers are cut out
  between tags, and ``<MoleculeE>``/``<MaterialE>`` serve as eos through ``convert_tokens_to_ids``.
- **Crystal-grammar tokens** (``<sg136>``, ``<w4a>``, ``<n2>``, ``<L4.60>``, ``<A90.00>``, ``<f600>``,
  ``<d2.45>``; 7,929): added *normal* tokens. Each is one value on an exact grid; as BPE text a
  ``<L4.60>`` is four to six pieces the model would have to learn to emit as a unit, and half a bin is no
  value. Normal, not special, because they are content: ``skip_special_tokens`` must keep them.
  ``material_tokens=False`` leaves them to the BPE.
- **SMILES and residues**: base-BPE text. The base model already reads SMILES and sequences (LOGOS kept
  them as text too); making the grammar's ~26k SMILES/residue pieces single tokens would give each a
  fresh, untrained embedding and discard what the base knows. Byte-level BPE encodes any string, so an
  extended tokenizer rejects nothing at tokenize time.

Grammar tokens are appended after the base vocabulary: the base's own tokens keep their ids (a real
Llama-3's ``<|eot_id|>`` stays 128009). From the base come:

- ``bos``: its config's ``bos_token`` (Llama-3 ``<|begin_of_text|>``; Qwen has none); ``prefix_ids`` is
  what its post-processor prepends. A base post-processor that *appends* anything (an eos) is replaced
  by a bos-prefix-only template: a prompt must never end "document over" (see ``grammar.tokenizer``).
- ``eod`` (the Megatron document end): the first of ``<|end_of_text|>`` (Llama-3), ``<|endoftext|>``
  (Qwen) in the vocabulary, else the base's ``eos_token``; or the ``eod_token`` given.
- ``pad``: the base's ``pad_token``; else ``<|eot_id|>`` when present (what LOGOS's scripts force for
  Llama models); else the eod.

Saved files: ``tokenizer.json`` (the one source of truth), ``tokenizer_config.json`` with
``tokenizer_class: PreTrainedTokenizerFast`` (the generic class takes ``tokenizer.json`` as it is under
transformers 4 and 5; model classes such as ``Qwen2Tokenizer`` rebuild parts of it from their own
arguments), ``special_tokens_map.json`` and ``logos_extension.json`` (base, specials, content hash).

The content hash is a sha256 over a canonical form of ``tokenizer.json`` (normalizer, pre-tokenizer,
model vocabulary and merges, added tokens, post-processor, decoder; keys sorted, merges as pairs, the
library version and truncation/padding settings left out), so the same base plus the same extension
always hash the same, wherever the base directory lives. Loading imports ``tokenizers`` only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer, processors

from grammar.errors import GrammarError, UnknownToken
from grammar.tags import GRAMMAR_TAGS
from grammar.tokenizer import EXTENSION_META_FILE, TOKENIZER_FILE, HFDecoding
from grammar.vocab import VOCAB_VERSION

EXTENSION_FORMAT = "logos-extended-tokenizer/1"
DOCUMENT_END_TOKENS = ("<|end_of_text|>", "<|endoftext|>")
LLAMA_PAD_TOKEN = "<|eot_id|>"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_MAP_FILE = "special_tokens_map.json"
KEPT_CONFIG_KEYS = ("model_max_length", "model_input_names", "chat_template")


def tokenizer_json_hash(hf: Tokenizer) -> str:
    """sha256 of the canonical form of a ``tokenizer.json`` (see the module docstring)."""
    data = json.loads(hf.to_str())
    for key in ("version", "truncation", "padding"):
        data.pop(key, None)
    model = data.get("model") or {}
    if isinstance(model.get("merges"), list):  # older tokenizers wrote "a b", newer ["a", "b"]
        model["merges"] = [m.split(" ", 1) if isinstance(m, str) else list(m) for m in model["merges"]]
    payload = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


def special_layout(hf: Tokenizer) -> tuple[list[int], list[int]]:
    """(ids the post-processor puts before the text, ids it puts after)."""
    probe = "a"
    plain = hf.encode(probe, add_special_tokens=False).ids
    full = hf.encode(probe, add_special_tokens=True).ids
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start], full[start + len(plain) :]
    raise GrammarError(f"the post-processor rewrites the text itself ({plain} -> {full}), not only adds specials")


def _content(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, an AddedToken dict, or null."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise GrammarError(f"{path}: not valid JSON: {exc}") from None
    return data if isinstance(data, dict) else {}


def _read_base(base: Path) -> Tokenizer:
    if (base / TOKENIZER_FILE).is_file():
        return Tokenizer.from_file(str(base / TOKENIZER_FILE))
    if not base.is_dir():
        raise GrammarError(f"{base}: base tokenizer directory does not exist")
    try:  # a slow-only base (vocab.json + merges.txt, sentencepiece): transformers converts it
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(base), local_files_only=True).backend_tokenizer
    except (OSError, ValueError, AttributeError) as exc:
        raise GrammarError(f"{base}: no {TOKENIZER_FILE} and transformers cannot read it: {exc}") from None


class ExtendedTokenizer(HFDecoding):
    """The extended kind: the same interface as ``grammar.tokenizer.GrammarTokenizer``."""

    kind = "extended"

    def __init__(self, hf: Tokenizer, config: dict[str, Any], meta: dict[str, Any]) -> None:
        self.hf = hf
        self.config = config
        self.meta = meta
        self.bos_id = self.token_id(meta["bos_token"]) if meta.get("bos_token") else None
        self.eod_id = self.token_id(meta["eod_token"])
        self.pad_id = self.token_id(meta["pad_token"])
        prefix, suffix = special_layout(hf)
        if suffix:
            raise GrammarError(f"the post-processor appends {suffix} to every text; prompts must not end in eos")
        self.prefix_ids = prefix
        self._vocab_size = max(hf.get_vocab(with_added_tokens=True).values()) + 1
        self._content_hash = tokenizer_json_hash(hf)

    # --- building ---------------------------------------------------------------------------------

    @classmethod
    def build(cls, base_dir: str | Path, *, material_tokens: bool = True, eod_token: str | None = None
              ) -> ExtendedTokenizer:
        """The base tokenizer in ``base_dir`` plus the grammar tokens (see the module docstring)."""
        base = Path(base_dir)
        hf = _read_base(base)
        base_config = _read_json(base / CONFIG_FILE)
        special_map = _read_json(base / SPECIAL_MAP_FILE)

        def named(key: str) -> str | None:
            token = _content(base_config.get(key)) or _content(special_map.get(key))
            return token if token is not None and hf.token_to_id(token) is not None else None

        base_size = hf.get_vocab_size(with_added_tokens=True)
        base_hash = tokenizer_json_hash(hf)
        bos, eos, pad = named("bos_token"), named("eos_token"), named("pad_token")
        if eod_token is not None and hf.token_to_id(eod_token) is None:
            raise GrammarError(f"{base}: eod token {eod_token!r} is not in the base vocabulary")
        eod = eod_token or next((t for t in DOCUMENT_END_TOKENS if hf.token_to_id(t) is not None), eos)
        if eod is None:
            raise GrammarError(f"{base}: no document-end token ({', '.join(DOCUMENT_END_TOKENS)} or an eos_token); "
                               "name one with eod_token")
        if pad is None:
            pad = LLAMA_PAD_TOKEN if hf.token_to_id(LLAMA_PAD_TOKEN) is not None else eod
        prefix, suffix = special_layout(hf)
        post_processor = "base"
        if suffix:
            names = [hf.id_to_token(i) for i in prefix]
            hf.post_processor = processors.TemplateProcessing(
                single=" ".join([*names, "$A"]), special_tokens=[(n, hf.token_to_id(n)) for n in dict.fromkeys(names)])
            post_processor = f"replaced: the base appended {[hf.id_to_token(i) for i in suffix]}"
        hf.add_special_tokens([AddedToken(tag, special=True, normalized=False) for tag in GRAMMAR_TAGS])
        normal: tuple[str, ...] = ()
        if material_tokens:
            from grammar.material.tokens import material_tokens as crystal_tokens

            normal = crystal_tokens()
            hf.add_tokens([AddedToken(t, special=False, normalized=False) for t in normal])
        config = {k: base_config[k] for k in KEPT_CONFIG_KEYS if k in base_config} | {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": bos, "eos_token": eos or eod, "pad_token": pad,
            "unk_token": named("unk_token"),
            "clean_up_tokenization_spaces": False,
        }
        meta = {
            "format": EXTENSION_FORMAT,
            "kind": cls.kind,
            "grammar_version": VOCAB_VERSION,
            "base_tokenizer": str(base),
            "base_vocab_size": base_size,
            "base_content_hash": base_hash,
            "bos_token": bos,
            "eod_token": eod,
            "pad_token": pad,
            "special_tokens": list(GRAMMAR_TAGS),
            "normal_tokens": len(normal),
            "post_processor": post_processor,
        }
        tokenizer = cls(hf, config, meta)
        for tag in GRAMMAR_TAGS:
            if hf.encode(tag, add_special_tokens=False).ids != [tokenizer.token_id(tag)]:
                raise GrammarError(f"{base}: {tag} does not encode as one token after the extension")
        tokenizer.meta |= {"vocab_size": tokenizer.vocab_size, "content_hash": tokenizer.content_hash}
        return tokenizer

    # --- the shared interface ---------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def content_hash(self) -> str:
        return self._content_hash

    def token_id(self, token: str) -> int:
        token_id = self.hf.token_to_id(token)
        if token_id is None:
            raise UnknownToken(f"{token!r} is not in the extended vocabulary")
        return token_id

    def encode(self, text: str, *, special: bool = False) -> list[int]:
        """Ids of ``text``; ``special`` adds ``prefix_ids`` (what transformers' add_special_tokens adds)."""
        return self.hf.encode(text, add_special_tokens=special).ids

    def encode_batch(self, texts: Sequence[str], *, special: bool = False, engine: str = "rust") -> list[list[int]]:
        """``engine`` is accepted for the native kind's sake; BPE always runs in Rust."""
        return [e.ids for e in self.hf.encode_batch(list(texts), add_special_tokens=special)]

    def encode_batch_results(
        self, texts: Sequence[str], *, special: bool = False, engine: str = "rust"
    ) -> list[list[int] | GrammarError]:
        """Byte-level BPE encodes every string, so no result is an error (same signature as native)."""
        return list(self.encode_batch(texts, special=special, engine=engine))

    # --- files ------------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """``tokenizer.json``, the transformers config files and ``logos_extension.json``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.hf.save(str(out / TOKENIZER_FILE))
        (out / CONFIG_FILE).write_text(json.dumps(self.config, indent=1))
        special_map = {k: self.config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")
                       if self.config.get(k)}
        (out / SPECIAL_MAP_FILE).write_text(json.dumps(special_map, indent=1))
        (out / EXTENSION_META_FILE).write_text(json.dumps(self.meta, indent=1))
        return out

    @classmethod
    def load(cls, directory: str | Path) -> ExtendedTokenizer:
        """Load a saved extended tokenizer; ``tokenizer.json`` must hash to what its metadata says."""
        path = Path(directory)
        meta = _read_json(path / EXTENSION_META_FILE)
        if meta.get("format") != EXTENSION_FORMAT:
            raise GrammarError(f"{path / EXTENSION_META_FILE}: format {meta.get('format')!r} is not "
                               f"{EXTENSION_FORMAT!r} (rebuild it with `logos grammar vocab --extend`)")
        hf = Tokenizer.from_file(str(path / TOKENIZER_FILE))
        tokenizer = cls(hf, _read_json(path / CONFIG_FILE), meta)
        if tokenizer.content_hash != meta.get("content_hash"):
            raise GrammarError(f"{path / TOKENIZER_FILE}: content hash {tokenizer.content_hash} does not match "
                               f"{meta.get('content_hash')} recorded in {EXTENSION_META_FILE}")
        return tokenizer


def extend_hf_tokenizer(base_dir: str | Path, out_dir: str | Path, *, material_tokens: bool = True,
                        eod_token: str | None = None) -> dict[str, Any]:
    """Build an ``ExtendedTokenizer`` from ``base_dir``, save it to ``out_dir``; returns its metadata."""
    tokenizer = ExtendedTokenizer.build(base_dir, material_tokens=material_tokens, eod_token=eod_token)
    tokenizer.save(out_dir)
    return tokenizer.meta
