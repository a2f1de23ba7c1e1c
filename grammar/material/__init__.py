"""Materials in the shared grammar: crystals (symmetry-aware, ``crystal.py``) and MOFs (``mof.py``).

The names below load on first use (PEP 562): ``grammar.vocab`` imports ``grammar.material.tokens`` to
build the vocabulary, and that must not pull in pymatgen and spglib, which a GPU training box (tokenizer
only) does not have.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "DEFAULT_CRYSTAL_CONFIG": "crystal", "Crystal": "crystal", "CrystalGrammarConfig": "crystal",
    "contacts_consistent": "crystal", "crystals_match": "crystal", "parse_crystal": "crystal",
    "write_crystal": "crystal",
    "MOF": "mof", "parse_mof": "mof", "write_mof": "mof",
    "MOFDecomposition": "mof_decomposition", "MOFDecompositionError": "mof_decomposition",
    "decompose_mof": "mof_decomposition", "mof_from_structure": "mof_decomposition",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"grammar.material.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
