"""USPTO reactions (Lowe's ``.rsmi``, USPTO-50k CSV, USPTO-MIT text) as ``react``/``reverse_react``.

Atom maps are removed and molecules canonicalized by ``grammar.reaction.Reaction``. Reagents:

- ``roles_from_atom_maps`` (default on): a reactant-side molecule none of whose mapped atoms reach a
  product is a reagent (solvents, bases, catalysts that text mining put among the reactants). Nothing
  moves when the products carry no atom maps, or when it would leave no reactant.
- ``reagents`` then says what happens to the reagents (``ReagentPolicy``, see ``grammar.reaction``):
  DROP by default for every format, so the ``<React>``/``<ReverseReact>`` samples have LOGOS's answer
  layout (products / reactants only; LOGOS reads any molecule after ``<ReverseReact>`` as a reactant).
  ``reagents: keep`` writes the conditions of Lowe's grants and USPTO-MIT as a ``<ReagentS>`` context
  block before the task token; ``merge`` folds them into the reactants.

Patent number, paragraph and year stay in the metadata for time splits. Lowe's files carry the year;
for USPTO-50k it is read from pre-grant publication numbers (``US2009xxxxxxxA1`` -> 2009), the one case
where the number states it, and left out for granted patents.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from grammar.formats import FORMATS
from grammar.reaction import Reaction, ReagentPolicy
from pipeline.groups import product_group
from pipeline.io import open_text
from pipeline.records import Reject, Sample, SourceItem, dedup_key
from pipeline.sources.base import Conversion, metadata_without_nones, reject_from
from pipeline.sources.smiles import WrongHeader, file_stem, guarded

LOWE_COLUMNS = ("ReactionSmiles", "PatentNumber", "ParagraphNum", "Year", "TextMinedYield", "CalculatedYield")
USPTO_50K_COLUMNS = ("id", "class", "reactants>reagents>production")
# Atom maps sit last in a bracket atom ("[CH3:12]"); a regex finds them without parsing each molecule.
MAP_NUMBER = re.compile(r":(\d+)\]")
PUBLICATION_NUMBER = re.compile(r"US(20\d\d)\d{7}A\d?")


class UsptoFormat(StrEnum):
    LOWE = "rsmi"  # tab-separated, LOWE_COLUMNS, with or without the header line
    USPTO_50K = "50k"  # CSV: id,class,reactants>reagents>production
    MIT = "mit"  # one "mapped_rxn [bond_edits]" per line


@dataclass(frozen=True, slots=True)
class UsptoConfig:
    format: UsptoFormat | None = None  # None: detected from the first line
    reagents: ReagentPolicy = ReagentPolicy.DROP  # LOGOS's answer layout; keep/merge only when asked
    roles_from_atom_maps: bool = True
    storage_options: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.format is not None:
            object.__setattr__(self, "format", UsptoFormat(self.format))
        object.__setattr__(self, "reagents", ReagentPolicy(self.reagents))


@dataclass
class UsptoSource:
    name: ClassVar[str] = "uspto"
    suffixes: ClassVar[tuple[str, ...]] = (".rsmi", ".rsmi.gz", ".csv", ".csv.gz", ".txt", ".txt.gz")
    chunk_items: ClassVar[int] = 1024

    config: UsptoConfig = field(default_factory=UsptoConfig)

    def read(self, uri: str) -> Iterator[SourceItem | Reject]:
        return guarded(self.name, uri, self._items(uri))

    def _items(self, uri: str) -> Iterator[SourceItem]:
        """Lowe and MIT files line by line; USPTO-50k through the csv module."""
        with open_text(uri, self.config.storage_options) as stream:
            lines = iter(stream)
            first = next(lines, None)
            if first is None:
                return
            kind = self.config.format or detect_format(first)
            if kind is UsptoFormat.USPTO_50K:
                yield from self._uspto_50k(uri, itertools.chain([first], lines))
                return
            stem = file_stem(uri)
            has_header = first.startswith(LOWE_COLUMNS[0])
            columns = tuple(first.rstrip("\r\n").split("\t")) if has_header else LOWE_COLUMNS
            for number, line in enumerate(itertools.chain([first], lines), start=1):
                if not line.strip() or (number == 1 and has_header):
                    continue
                locator = f"line {number}"
                if kind is UsptoFormat.LOWE:
                    values = dict(zip(columns, line.rstrip("\r\n").split("\t"), strict=False))
                    patent = values.get("PatentNumber") or stem
                    fields = {"patent_number": patent, "paragraph": values.get("ParagraphNum") or None,
                              "year": _integer(values.get("Year")),
                              "text_mined_yield": values.get("TextMinedYield") or None,
                              "calculated_yield": values.get("CalculatedYield") or None}
                    payload = _payload(kind, values["ReactionSmiles"], f"{patent}:{locator}", fields)
                else:
                    reaction, *edits = line.split()
                    fields = {"bond_edits": " ".join(edits) or None}
                    payload = _payload(kind, reaction, f"{stem}:{locator}", fields)
                yield SourceItem(self.name, uri, locator, payload)

    def _uspto_50k(self, uri: str, lines: Iterator[str]) -> Iterator[SourceItem]:
        reader = csv.DictReader(lines)
        if tuple(reader.fieldnames or ()) != USPTO_50K_COLUMNS:
            raise WrongHeader(f"USPTO-50k needs the header {','.join(USPTO_50K_COLUMNS)}, "
                              f"found {reader.fieldnames}")
        for row_number, row in enumerate(reader, start=1):
            patent = row["id"]
            year = PUBLICATION_NUMBER.fullmatch(patent or "")
            fields = {"patent_number": patent, "reaction_class": _integer(row["class"]),
                      "year": int(year.group(1)) if year else None}
            reaction = row[USPTO_50K_COLUMNS[2]] or ""
            payload = _payload(UsptoFormat.USPTO_50K, reaction, f"{patent}:row {row_number}", fields)
            yield SourceItem(self.name, uri, f"row {row_number}", payload)

    def convert(self, item: SourceItem) -> Conversion:
        payload = item.payload
        policy = self.config.reagents
        try:
            core = payload["reaction"].strip().split(" ")[0]  # a CXSMILES extension may follow a space
            if self.config.roles_from_atom_maps:
                core = reagents_from_atom_maps(core)
            reaction = Reaction.from_reaction_smiles(core, reagents=policy, source_id=payload["id"])
        except ValueError as exc:  # InvalidSmiles (with RDKit's reason), MalformedText
            return Conversion(rejects=[reject_from(item, "convert", exc)])
        sides = (reaction.reactants, reaction.products)
        canonical = ">>".join(".".join(m.smiles for m in side) for side in sides)
        metadata = metadata_without_nones(**payload["fields"], reagent_policy=policy.value)
        group = product_group(reaction)  # both task views of the reaction share it
        samples = [
            Sample("reaction", task, FORMATS[task].write(reaction), payload["id"],
                   dedup_key("reaction", canonical), metadata, split_group=group, obj=reaction)
            for task in ("react", "reverse_react")
        ]
        return Conversion(samples=samples)


def detect_format(first_line: str) -> UsptoFormat:
    if first_line.startswith(LOWE_COLUMNS[0]) or (">" in first_line.split("\t")[0] and "\t" in first_line):
        return UsptoFormat.LOWE
    if first_line.startswith("id,class"):
        return UsptoFormat.USPTO_50K
    if first_line.count(">") >= 2:
        return UsptoFormat.MIT
    raise WrongHeader(f"not a USPTO .rsmi, USPTO-50k or USPTO-MIT file (first line {first_line[:120]!r})")


def reagents_from_atom_maps(core: str) -> str:
    """Move reactant-side molecules with no atom mapped into a product to the reagent field.

    RDKit's ``RemoveUnmappedReactantTemplates`` looks only at whether atoms carry maps; USPTO-MIT maps
    solvent atoms too, so the test here is whether a map number reaches the products.
    """
    parts = core.split(">")
    if len(parts) != 3:
        return core  # Reaction.from_reaction_smiles rejects it with the reason
    reactants, reagents, products = parts
    product_maps = set(MAP_NUMBER.findall(products))
    if not product_maps:
        return core
    molecules = [m for m in reactants.split(".") if m]
    kept = [m for m in molecules if product_maps.intersection(MAP_NUMBER.findall(m))]
    if not kept or len(kept) == len(molecules):
        return core
    moved = [m for m in molecules if m not in kept]
    return f"{'.'.join(kept)}>{'.'.join([m for m in reagents.split('.') if m] + moved)}>{products}"


def _payload(kind: UsptoFormat, reaction: str, source_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"format": kind, "reaction": reaction, "id": source_id, "fields": fields}


def _integer(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
