"""Materials Project crystals as ``material`` samples.

Inputs: API summary/materials documents (JSON array, single document, ``{"data": [...]}`` API response,
JSON Lines; id from ``material_id`` or the older ``task_id``; ``structure`` a pymatgen dict), pymatgen
``Structure``/``TransformedStructure`` JSON, ``ComputedStructureEntry`` dicts (``MPRester.get_entries``),
CIF files (id from an ``mp-149``/``mp_149`` in the file name) and MP-20-style CSV with a ``cif`` column.

Partially occupied structures are rejected as ``disordered_structure``; with ``order_disordered=True``
they are ordered by pymatgen's ``OrderDisorderedStructureTransformation`` (lowest Ewald energy, after
guessing oxidation states) and marked ``ordered_from_disordered`` in the metadata.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from pymatgen.core import Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry
from pymatgen.io.cif import CifParser
from pymatgen.transformations.standard_transformations import OrderDisorderedStructureTransformation

from grammar.errors import DisorderedStructure, InvalidStructure
from grammar.formats import FORMATS
from grammar.material import Crystal
from pipeline.groups import key_group
from pipeline.io import open_text
from pipeline.records import Reject, Sample, SourceItem, material_group_key
from pipeline.sources.base import Conversion, metadata_without_nones, reject_from
from pipeline.sources.smiles import WrongHeader, file_stem, guarded

MP_ID = re.compile(r"(mp|mvc)[-_](\d+)")
SPACE_GROUP_TOKEN = re.compile(r"<sg(\d+)>")
CSV_ID_COLUMNS = ("material_id", "task_id", "id")
# MP-20 column names -> the metadata keys documents use
CSV_ALIASES = {"pretty_formula": "formula", "e_above_hull": "energy_above_hull", "spacegroup.number": "mp_space_group"}


class MpFormat(StrEnum):
    JSON = "json"  # one document, a list of them, or an API response {"data": [...]}
    JSONL = "jsonl"  # one document per line
    CIF = "cif"
    CSV = "csv"  # MP-20 style: material_id, cif, properties


class InvalidJson(ValueError):
    reason_code = "invalid_json"


class OrderingFailed(InvalidStructure):
    reason_code = "ordering_failed"


@dataclass(frozen=True, slots=True)
class MpConfig:
    format: MpFormat | None = None  # None: by extension, else by content
    order_disordered: bool = False
    storage_options: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.format is not None:
            object.__setattr__(self, "format", MpFormat(self.format))


@dataclass
class MpSource:
    name: ClassVar[str] = "mp"
    suffixes: ClassVar[tuple[str, ...]] = (
        ".json", ".json.gz", ".jsonl", ".jsonl.gz", ".cif", ".cif.gz", ".csv", ".csv.gz",
    )
    chunk_items: ClassVar[int] = 128  # tens of ms per crystal (symmetry analysis, contacts)

    config: MpConfig = field(default_factory=MpConfig)

    def read(self, uri: str) -> Iterator[SourceItem | Reject]:
        return guarded(self.name, uri, self._items(uri))

    def _items(self, uri: str) -> Iterator[SourceItem | Reject]:
        stem = file_stem(uri)
        with open_text(uri, self.config.storage_options) as stream:
            lines = iter(stream)
            first = next(lines, None)
            if first is None:
                return
            kind = self.config.format or detect_format(stem, first)
            name = stem.rsplit(".", 1)[0]
            if kind is MpFormat.JSONL:
                for number, line in enumerate(itertools.chain([first], lines), start=1):
                    if not line.strip():
                        continue
                    try:
                        yield self._item(uri, f"line {number}", json.loads(line), f"{name}:line {number}")
                    except json.JSONDecodeError as exc:  # one bad line, not the file
                        yield Reject(self.name, uri, f"line {number}", "read", "invalid_json", str(exc))
            elif kind is MpFormat.JSON:
                # Whole-file JSON documents are small (one material, or an API page); parsed per file.
                try:
                    data = json.loads(first + stream.read())
                except json.JSONDecodeError as exc:
                    raise InvalidJson(f"not valid JSON: {exc}") from exc
                # An API response wraps its page in "data"; an entry's own "data" is a dict of ids.
                api_page = isinstance(data, dict) and isinstance(data.get("data"), list)
                documents = data["data"] if api_page else [data] if isinstance(data, dict) else data
                for number, document in enumerate(documents, start=1):
                    fallback_id = name if len(documents) == 1 else f"{name}#{number}"
                    yield self._item(uri, f"doc {number}", document, fallback_id)
            elif kind is MpFormat.CIF:
                text = first + stream.read()
                match = MP_ID.search(stem)
                source_id = f"{match.group(1)}-{match.group(2)}" if match else name
                yield SourceItem(self.name, uri, "file", {"cif": text, "id": source_id, "fields": {}})
            else:
                yield from self._csv(uri, itertools.chain([first], lines))

    def _item(self, uri: str, locator: str, document: Any, fallback_id: str) -> SourceItem:
        source_id = document_id(document) if isinstance(document, dict) else None
        return SourceItem(self.name, uri, f"{locator} ({source_id or fallback_id})",
                          {"document": document, "id": source_id or fallback_id})

    def _csv(self, uri: str, lines: Iterator[str]) -> Iterator[SourceItem]:
        reader = csv.DictReader(lines)
        columns = reader.fieldnames or []
        id_column = next((c for c in CSV_ID_COLUMNS if c in columns), None)
        if "cif" not in columns or id_column is None:
            raise WrongHeader(f"need a 'cif' column and an id column {CSV_ID_COLUMNS}, found {columns}")
        for number, row in enumerate(reader, start=1):
            fields = {CSV_ALIASES.get(k, k): _number(v) for k, v in row.items()
                      if k and k not in ("cif", id_column) and v not in ("", None)}
            payload = {"cif": row["cif"] or "", "id": row[id_column], "fields": fields}
            yield SourceItem(self.name, uri, f"row {number} ({row[id_column]})", payload)

    def convert(self, item: SourceItem) -> Conversion:
        payload = item.payload
        try:
            if "cif" in payload:
                with warnings.catch_warnings():  # e.g. "fractional coordinates rounded", on every MP CIF
                    warnings.simplefilter("ignore")
                    structures = CifParser.from_str(payload["cif"]).parse_structures(primitive=False)
                metadata = dict(payload["fields"])
                if not structures:
                    raise InvalidStructure("the CIF holds no structure pymatgen can read")
            else:
                structure, metadata = structure_of(payload["document"])
                structures = [structure]
        except Exception as exc:  # pymatgen raises ValueError, KeyError, TypeError on malformed input
            return Conversion(rejects=[reject_from(item, "parse", exc)])
        conversion = Conversion()
        for index, structure in enumerate(structures):
            source_id = payload["id"] if len(structures) == 1 else f"{payload['id']}#{index + 1}"
            try:
                conversion.samples.append(self._sample(structure, source_id, metadata))
            except (InvalidStructure, ValueError) as exc:
                part = f"structure {index + 1}" if len(structures) > 1 else None
                conversion.rejects.append(reject_from(item, "convert", exc, part))
        return conversion

    def _sample(self, structure: Structure, source_id: str, metadata: dict[str, Any]) -> Sample:
        if not structure.is_ordered:
            if not self.config.order_disordered:
                raise DisorderedStructure(f"{source_id}: partial occupancies ({structure.composition}); "
                                          "set order_disordered to order them")
            structure = order(structure)
            metadata = {**metadata, "ordered_from_disordered": True}
        crystal = Crystal.from_structure(structure, source_id)
        text = FORMATS["material"].write(crystal)
        space_group = int(SPACE_GROUP_TOKEN.search(text).group(1))  # the one the grammar wrote
        key = material_group_key(structure.composition.reduced_formula, space_group)
        metadata = {**metadata, "space_group": space_group}
        return Sample("material", "material", text, source_id, key, metadata, split_group=key_group(key),
                      obj=crystal)


def detect_format(name: str, first_line: str) -> MpFormat:
    for suffix, kind in ((".jsonl", MpFormat.JSONL), (".json", MpFormat.JSON), (".cif", MpFormat.CIF),
                         (".csv", MpFormat.CSV)):
        if name.lower().endswith(suffix):
            return kind
    line = first_line.strip()
    if line.startswith(("{", "[")):
        try:
            json.loads(line)
            return MpFormat.JSONL
        except json.JSONDecodeError:
            return MpFormat.JSON
    if line.startswith(("data_", "#")):
        return MpFormat.CIF
    if "cif" in next(csv.reader([line])):
        return MpFormat.CSV
    raise WrongHeader(f"not MP JSON, JSON Lines, CIF or a CSV with a 'cif' column (first line {line[:120]!r})")


def document_id(document: dict[str, Any]) -> str | None:
    """material_id, task_id, an entry's entry_id or data ids, or a TransformedStructure's history."""
    data = document.get("data") if isinstance(document.get("data"), dict) else {}
    for value in (document.get("material_id"), document.get("task_id"), document.get("entry_id"),
                  data.get("material_id"), data.get("task_id")):
        if value:
            return str(value)
    for step in document.get("history") or []:
        if isinstance(step, dict) and step.get("materialsid"):
            return str(step["materialsid"])
    return None


def structure_of(document: dict[str, Any]) -> tuple[Structure, dict[str, Any]]:
    """The structure of a document, entry or structure dict, and the metadata worth keeping."""
    kind = document.get("@class")
    if kind == "ComputedStructureEntry" or {"structure", "energy", "correction"} <= document.keys():
        entry = ComputedStructureEntry.from_dict(document)
        metadata = metadata_without_nones(energy=entry.energy, energy_per_atom=entry.energy_per_atom,
                                          correction=entry.correction, formula=entry.reduced_formula)
        return entry.structure, metadata
    if kind in ("Structure", "TransformedStructure") or {"lattice", "sites"} <= document.keys():
        structure = Structure.from_dict(document)
        return structure, {"formula": structure.composition.reduced_formula}
    if not isinstance(document.get("structure"), dict):
        raise InvalidStructure("document has no 'structure', and is neither a Structure nor an entry")
    symmetry = document.get("symmetry") or {}
    metadata = metadata_without_nones(
        formula=document.get("formula_pretty"),
        energy_per_atom=document.get("energy_per_atom") or document.get("uncorrected_energy_per_atom"),
        formation_energy_per_atom=document.get("formation_energy_per_atom"),
        energy_above_hull=document.get("energy_above_hull", document.get("e_above_hull")),
        band_gap=document.get("band_gap", (document.get("bandstructure") or {}).get("band_gap")),
        mp_space_group=symmetry.get("number"), mp_space_group_symbol=symmetry.get("symbol"),
    )
    return Structure.from_dict(document["structure"]), metadata


def order(structure: Structure) -> Structure:
    """The lowest-Ewald-energy ordering of a disordered structure (oxidation states guessed first)."""
    try:
        charged = structure.copy()
        charged.add_oxidation_state_by_guess()
        ordered = OrderDisorderedStructureTransformation().apply_transformation(charged)
    except Exception as exc:  # pymatgen raises ValueError for occupancies the cell cannot realize
        raise OrderingFailed(f"could not order the disordered structure: {exc}") from exc
    ordered.remove_oxidation_states()
    return ordered


def _number(value: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value
