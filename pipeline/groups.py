"""Split group keys: one definition, used by the sources at ingest and by ``pipeline.split`` for older shards.

A source calls these on the object it already parsed (the RDKit molecule, the ``Reaction``), so the key
costs no second parse, and writes the result to ``Sample.split_group`` (the ``split_group`` shard column).
``pipeline.split.record_group`` calls the same functions on objects it parses back from the text, for
shards written before the column existed: both paths give the same key for the same record.
"""

from __future__ import annotations

from typing import Any

from rdkit import Chem
from rdkit.Chem.Scaffolds import MurckoScaffold


def molecule_group(mol: Chem.Mol, dedup_key: str) -> str:
    """``scaffold:<Bemis–Murcko scaffold SMILES>``; a molecule without rings is its own group,
    ``acyclic:<its exact-dedup key>`` (so exact duplicates still share a split)."""
    return murcko_group(murcko_scaffold(mol), dedup_key)


def murcko_group(scaffold: str, dedup_key: str) -> str:
    """``molecule_group`` from the molecule's ``murcko_scaffold`` (for callers that hold it already)."""
    return f"scaffold:{scaffold}" if scaffold else f"acyclic:{dedup_key}"


def murcko_scaffold(mol: Chem.Mol) -> str:
    """RDKit's ``MurckoScaffoldSmiles(mol=mol)`` ("" when there is none), called as its two steps (scaffold
    molecule, then its non-isomeric SMILES). ``MurckoDecompose`` keeps ring atoms and the paths between rings, so
    a molecule without rings has the empty scaffold: that is answered from the ring count its parse holds. The
    scaffold costs ~0.8x of a bare parse + canonical SMILES (``benchmarks/bench_ingest.py``, "molecule (floor:
    keys)" against "molecule"): the largest part of a molecule's ingest after the parse."""
    if not mol.GetRingInfo().NumRings():
        return ""
    return Chem.MolToSmiles(MurckoScaffold.GetScaffoldForMol(mol), False)


def product_group(reaction: Any) -> str:
    """``product:<canonical product SMILES>`` of a ``grammar.reaction.Reaction``: both task views of one
    reaction, and every route to one product, stay in one split."""
    return "product:" + ".".join(m.smiles for m in reaction.products)


def key_group(dedup_key: str) -> str:
    """``key:<dedup key>``: materials (their (formula, space group) group key) and anything else keyed."""
    return f"key:{dedup_key}"


def chain_sequences_of(obj: Any) -> list[str] | None:
    """The chain sequences of a Protein, a BindingSite or Complex (through ``.protein``), or an Antibody;
    None for anything else (split then reads them from the text)."""
    holder = getattr(obj, "protein", obj)
    chains = getattr(holder, "chains", None)
    if not chains:
        return None
    sequences = [getattr(chain, "sequence", None) for chain in chains]
    return sequences if all(isinstance(s, str) and s for s in sequences) else None
