"""Materials in the shared grammar: crystals (symmetry-aware, ``crystal.py``) and MOFs (``mof.py``)."""

from grammar.material.crystal import (
    DEFAULT_CRYSTAL_CONFIG,
    Crystal,
    CrystalGrammarConfig,
    contacts_consistent,
    crystals_match,
    parse_crystal,
    write_crystal,
)
from grammar.material.mof import MOF, parse_mof, write_mof

__all__ = [
    "DEFAULT_CRYSTAL_CONFIG", "MOF", "Crystal", "CrystalGrammarConfig", "contacts_consistent", "crystals_match",
    "parse_crystal", "parse_mof", "write_crystal", "write_mof",
]
