"""The one vocabulary of the shared grammar: deterministic order, a version and a content hash.

The token groups are imported inside ``grammar_vocabulary``: they come from the molecule, protein and
material modules (RDKit, pymatgen), and a saved tokenizer must load without that stack (training ranks,
GPU boxes). ``Vocabulary`` itself needs nothing but the token list.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property, lru_cache

from grammar.tags import OBJECT_TAGS, REGION_TAGS, SPECIAL_TOKENS, TASK_TOKENS

# 2: <AntibodyS>/<AntibodyE> joined the tags (LOGOS's antibody tags).
# 3: <CdrS>/<CdrE> (grammar.antibody) appended as the last group: every version-2 token keeps its id.
VOCAB_VERSION = "logos-grammar-3"


@dataclass(frozen=True)
class Vocabulary:
    """Token strings in id order, grouped by the part of the grammar they serve."""

    groups: tuple[tuple[str, tuple[str, ...]], ...]
    version: str = VOCAB_VERSION

    @cached_property
    def tokens(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for _, members in self.groups:
            for token in members:
                seen.setdefault(token, None)
        return tuple(seen)

    @cached_property
    def ids(self) -> dict[str, int]:
        return {token: i for i, token in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @cached_property
    def content_hash(self) -> str:
        payload = json.dumps([self.version, list(self.tokens)], separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(payload).hexdigest()

    def metadata(self) -> dict:
        return {
            "version": self.version,
            "content_hash": self.content_hash,
            "size": len(self),
            "groups": {name: len(members) for name, members in self.groups},
            "special_tokens": dict(zip(("pad", "bos", "eos", "unk"), SPECIAL_TOKENS, strict=True)),
        }


@lru_cache(maxsize=1)
def grammar_vocabulary() -> Vocabulary:
    from grammar.material.tokens import material_tokens
    from grammar.molecule import smiles_tokens
    from grammar.protein import RESIDUE_ALPHABET

    # Residue letters come first among the letters so their ids read like the alphabet; the SMILES
    # atoms that are also residue letters (C, N, O, S, ...) share those ids.
    return Vocabulary(
        groups=(
            ("special", SPECIAL_TOKENS),
            ("tags", OBJECT_TAGS + TASK_TOKENS),
            ("residues", tuple(RESIDUE_ALPHABET)),
            ("smiles", smiles_tokens()),
            ("material", material_tokens()),
            ("regions", REGION_TAGS),
        )
    )
