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
from grammar.material.mof_decomposition import (
    MOFDecomposition,
    MOFDecompositionError,
    decompose_mof,
    mof_from_structure,
)

__all__ = [
    "DEFAULT_CRYSTAL_CONFIG", "MOF", "Crystal", "CrystalGrammarConfig", "MOFDecomposition", "MOFDecompositionError",
    "contacts_consistent", "crystals_match", "decompose_mof", "mof_from_structure", "parse_crystal", "parse_mof",
    "write_crystal", "write_mof",
]
