"""Extend an existing HF tokenizer (Llama, Qwen, ...) with the grammar, as LOGOS did.

The grammar's tags and task tokens become added *special* tokens (never split, one id each); the
crystal-grammar tokens optionally become added normal tokens. SMILES and residues stay with the base
tokenizer's own pieces. Everything is local: the base tokenizer is a directory on disk.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from grammar.material.tokens import material_tokens
from grammar.tags import GRAMMAR_TAGS
from grammar.vocab import VOCAB_VERSION

EXTENSION_META_FILE = "logos_extension.json"


def extend_hf_tokenizer(base_dir: str | Path, out_dir: str | Path, *, material_tokens: bool = True) -> dict:
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
    base_size = len(tokenizer)
    # add_tokens(special_tokens=True) is the spelling shared by transformers 4 and 5 (the dict key for
    # extra special tokens was renamed between them).
    tags = [AddedToken(tag, special=True, normalized=False) for tag in GRAMMAR_TAGS]
    added_special = tokenizer.add_tokens(tags, special_tokens=True)
    extra = list(_material_tokens()) if material_tokens else []
    added_normal = tokenizer.add_tokens(extra) if extra else 0
    out = Path(out_dir)
    tokenizer.save_pretrained(str(out))
    added = list(GRAMMAR_TAGS) + extra
    meta = {
        "grammar_version": VOCAB_VERSION,
        "base_tokenizer": str(base_dir),
        "base_vocab_size": base_size,
        "vocab_size": len(tokenizer),
        "added_special_tokens": added_special,
        "added_tokens": added_normal,
        "added_hash": "sha256:" + hashlib.sha256(json.dumps(added).encode()).hexdigest(),
        "tag_ids": {tag: tokenizer.convert_tokens_to_ids(tag) for tag in GRAMMAR_TAGS},
    }
    (out / EXTENSION_META_FILE).write_text(json.dumps(meta, indent=1))
    return meta


def _material_tokens() -> tuple[str, ...]:
    return material_tokens()
