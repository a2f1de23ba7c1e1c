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
    scaffold = MurckoScaffold.MurckoScaffoldSmiles(mol=mol)
    return f"scaffold:{scaffold}" if scaffold else f"acyclic:{dedup_key}"


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
