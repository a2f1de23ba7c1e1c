"""Reactions: reactants ``<React>`` products, and ``<ReverseReact>`` (products -> reactants).

Each molecule is its own ``<MoleculeS>…<MoleculeE>`` block, in canonical order (sorted canonical
SMILES), so the same reaction always reads the same.

Reagents (``reagents: drop|keep|merge``, ``ReagentPolicy``) follow LOGOS's answer layout: the text after
the task token (the answer a model writes) holds products (``<React>``) or reactants
(``<ReverseReact>``) only. LOGOS has no reagent tag, and its retrosynthesis extraction reads every
``<MoleculeS>…<MoleculeE>`` after ``<ReverseReact>`` as a reactant, so a reagent there would count as a
wrong reactant. Hence:

- ``drop`` (the default, and USPTO-50k's convention): reagents are not part of the sample.
- ``keep`` (only when asked): a ``<ReagentS>…<ReagentE>`` block of context *before* the task token, in
  both directions: ``reactants [reagents] <React> products`` and
  ``products [reagents] <ReverseReact> reactants``. The answer stays LOGOS's.
- ``merge``: reagents folded into the reactants (USPTO-MIT's "mixed" setting): they are then part of
  the ``<ReverseReact>`` answer, by the user's choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from grammar.errors import InvalidSmiles, MalformedText
from grammar.lexer import TokenStream
from grammar.molecule import Molecule, canonical_smiles, read_molecule_block, write_molecule
from grammar.tags import MOLECULE_S, REACT, REAGENT_E, REAGENT_S, REVERSE_REACT


class ReagentPolicy(StrEnum):
    """What to do with the middle part of ``reactants>reagents>products``."""

    DROP = "drop"  # reagents are not part of the sample (USPTO-50k and most retrosynthesis benchmarks)
    KEEP = "keep"  # written in a <ReagentS> block before the task token (context, never the answer)
    MERGE = "merge"  # folded into the reactants ("mixed" setting of USPTO-MIT)


@dataclass(frozen=True, slots=True)
class Reaction:
    reactants: tuple[Molecule, ...]
    products: tuple[Molecule, ...]
    reagents: tuple[Molecule, ...] = ()
    source_id: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.reactants or not self.products:
            raise MalformedText("a reaction needs at least one reactant and one product")
        for part in (self.reactants, self.products, self.reagents):
            if [m.smiles for m in part] != sorted(m.smiles for m in part):
                raise MalformedText("reaction molecules must be in canonical (sorted SMILES) order")

    @classmethod
    def from_reaction_smiles(
        cls, reaction_smiles: str, *, reagents: ReagentPolicy = ReagentPolicy.DROP, source_id: str | None = None
    ) -> Reaction:
        """From ``reactants>reagents>products`` (atom maps allowed, removed; CXSMILES extensions ignored)."""
        core = reaction_smiles.strip().split(" ")[0]
        parts = core.split(">")
        if len(parts) != 3:
            raise InvalidSmiles(f"reaction SMILES needs 'reactants>reagents>products', got {len(parts)} part(s)")
        reactants, middle, products = (_unmapped_molecules(p) for p in parts)
        if reagents is ReagentPolicy.MERGE:
            reactants, middle = reactants + middle, []
        elif reagents is ReagentPolicy.DROP:
            middle = []
        return cls(_ordered(reactants), _ordered(products), _ordered(middle), source_id)


# An atom-map class ends a bracket atom: "[CH3:7]". Dropping it there gives the same molecule (bracket
# atoms state their hydrogens), and parsing the unmapped text avoids stereo perceived under maps, which
# can canonicalize differently from the same molecule read without them.
_ATOM_MAP = re.compile(r":\d+\]")


def _unmapped_molecules(smiles_list: str) -> list[Molecule]:
    return [Molecule(canonical_smiles(_ATOM_MAP.sub("]", s))) for s in filter(None, smiles_list.split("."))]


def _ordered(molecules: list[Molecule]) -> tuple[Molecule, ...]:
    return tuple(sorted(molecules, key=lambda m: m.smiles))


def _blocks(molecules: tuple[Molecule, ...]) -> str:
    return "".join(write_molecule(m) for m in molecules)


def _reagent_block(reaction: Reaction) -> str:
    return f"{REAGENT_S}{_blocks(reaction.reagents)}{REAGENT_E}" if reaction.reagents else ""


def write_reaction(reaction: Reaction) -> str:
    return f"{_blocks(reaction.reactants)}{_reagent_block(reaction)}{REACT}{_blocks(reaction.products)}"


def write_reverse_reaction(reaction: Reaction) -> str:
    return f"{_blocks(reaction.products)}{_reagent_block(reaction)}{REVERSE_REACT}{_blocks(reaction.reactants)}"


def _read_blocks(stream: TokenStream) -> list[Molecule]:
    molecules = [read_molecule_block(stream)]
    while stream.peek() == MOLECULE_S:
        molecules.append(read_molecule_block(stream))
    return molecules


def _read_reagents(stream: TokenStream) -> list[Molecule]:
    if not stream.accept(REAGENT_S):
        return []
    molecules = _read_blocks(stream)
    stream.expect(REAGENT_E)
    return molecules


def _checked(stream: TokenStream, reactants: list[Molecule], products: list[Molecule], reagents: list[Molecule]):
    try:
        return Reaction(_ordered(reactants), _ordered(products), _ordered(reagents))
    except MalformedText as exc:
        raise stream.error(exc.reason, at=0) from exc


def parse_reaction(text: str) -> Reaction:
    stream = TokenStream(text)
    reactants = _read_blocks(stream)
    reagents = _read_reagents(stream)
    stream.expect(REACT)
    products = _read_blocks(stream)
    stream.expect_end()
    return _checked(stream, reactants, products, reagents)


def parse_reverse_reaction(text: str) -> Reaction:
    stream = TokenStream(text)
    products = _read_blocks(stream)
    reagents = _read_reagents(stream)
    stream.expect(REVERSE_REACT)
    reactants = _read_blocks(stream)
    stream.expect_end()
    return _checked(stream, reactants, products, reagents)
