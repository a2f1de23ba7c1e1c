"""ChEMBL: chemreps text, SDF, activity CSV exports and the SQLite release, as ``molecule`` samples.

Every molecule goes through the ChEMBL Structure Pipeline (standardize, then parent) unless
``standardize=False``; molecules the pipeline excludes (metals, more than 7 borons; ChEMBL itself keeps
those unstandardized) are rejected as ``chembl_excluded``. The ChEMBL id is the sample's ``source_id``.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from chembl_structure_pipeline.standardizer import parse_molblock
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from rdkit import Chem

from grammar.molecule import mol_from_smiles
from pipeline.io import open_binary, open_text
from pipeline.records import Reject, Sample, SourceItem
from pipeline.sources.base import Conversion
from pipeline.sources.smiles import (
    MoleculeKey,
    WrongHeader,
    convert_molecule,
    guarded,
    molecule_sample,
    sniff_delimiter,
)

ID_COLUMNS = ("molecule_chembl_id", "Molecule ChEMBL ID", "chembl_id", "ChEMBL ID")
SMILES_COLUMNS = ("canonical_smiles", "smiles", "Smiles", "SMILES")
SDF_ID_FIELDS = ("chembl_id", "Molecule ChEMBL ID", "ChEMBL ID")
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_QUERY = """
    SELECT md.molregno, md.chembl_id, md.pref_name, cs.canonical_smiles
    FROM molecule_dictionary AS md JOIN compound_structures AS cs ON md.molregno = cs.molregno
    ORDER BY md.molregno
"""


class InvalidMolblock(ValueError):
    """An SDF record whose connection table RDKit cannot read or sanitize."""

    reason_code = "invalid_molblock"


class ChemblFormat(StrEnum):
    CHEMREPS = "chemreps"  # chembl_XX_chemreps.txt: chembl_id, canonical_smiles, standard_inchi(_key)
    SDF = "sdf"  # chembl_XX.sdf or a web-interface SDF export
    CSV = "csv"  # activity/compound exports: an id column and a SMILES column, ',' ';' or tab separated
    SQLITE = "sqlite"  # the release database: molecule_dictionary joined with compound_structures


@dataclass(frozen=True, slots=True)
class ChemblConfig:
    format: ChemblFormat | None = None  # None: detected from the file's first bytes
    standardize: bool = True  # ChEMBL Structure Pipeline: ~5x the conversion cost without it
    molecule_key: MoleculeKey = MoleculeKey.CANONICAL_SMILES  # as the smiles source: keys meet across sources
    storage_options: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.format is not None:
            object.__setattr__(self, "format", ChemblFormat(self.format))


@dataclass
class ChemblSource:
    name: ClassVar[str] = "chembl"
    suffixes: ClassVar[tuple[str, ...]] = (
        ".txt", ".txt.gz", ".sdf", ".sdf.gz", ".csv", ".csv.gz", ".tsv", ".tsv.gz", ".db", ".sqlite", ".sqlite3",
    )
    chunk_items: ClassVar[int] = 512  # ~5 ms per molecule with standardization

    config: ChemblConfig = field(default_factory=ChemblConfig)

    def read(self, uri: str) -> Iterator[SourceItem | Reject]:
        return guarded(self.name, uri, self._items(uri))

    def _items(self, uri: str) -> Iterator[SourceItem | Reject]:
        kind = self.config.format or detect_format(uri, self.config.storage_options)
        readers = {
            ChemblFormat.CHEMREPS: self._table, ChemblFormat.CSV: self._table,
            ChemblFormat.SDF: self._sdf, ChemblFormat.SQLITE: self._sqlite,
        }
        if kind is not None:
            yield from readers[kind](uri)

    def _item(self, uri: str, locator: str, chembl_id: str, payload: dict[str, Any]) -> SourceItem | Reject:
        if not chembl_id:
            return Reject(self.name, uri, locator, "read", "missing_chembl_id", f"{locator}: no ChEMBL id")
        return SourceItem(self.name, uri, f"{locator} ({chembl_id})", {"chembl_id": chembl_id, **payload})

    def _table(self, uri: str) -> Iterator[SourceItem | Reject]:
        with open_text(uri, self.config.storage_options) as stream:
            lines = iter(stream)
            first = next(lines, None)
            if first is None:
                return
            reader = csv.DictReader(itertools.chain([first], lines), delimiter=sniff_delimiter(first))
            id_column = _pick(reader.fieldnames, ID_COLUMNS)
            smiles_column = _pick(reader.fieldnames, SMILES_COLUMNS)
            if id_column is None or smiles_column is None:
                raise WrongHeader(f"need an id column {ID_COLUMNS} and a SMILES column {SMILES_COLUMNS}, "
                                  f"found {reader.fieldnames}")
            skip = {id_column, smiles_column, "", "standard_inchi"}  # "" is a pandas index column
            for row in reader:
                fields = {_snake(k): v for k, v in row.items() if k and k not in skip and v not in (None, "")}
                payload = {"smiles": (row[smiles_column] or "").strip(), "fields": fields}
                yield self._item(uri, f"line {reader.line_num}", (row[id_column] or "").strip(), payload)

    def _sdf(self, uri: str) -> Iterator[SourceItem | Reject]:
        # Records are split here rather than by RDKit's ForwardSDMolSupplier, which yields None for a bad
        # record and loses its text; each record is parsed by RDKit in ``convert``.
        with open_text(uri, self.config.storage_options) as stream:
            record: list[str] = []
            number = 0
            for line in stream:
                if line.rstrip("\r\n") != "$$$$":
                    record.append(line)
                    continue
                number += 1
                yield self._item(uri, f"record {number}", _sdf_id(record), {"record": "".join(record)})
                record = []
            if any(line.strip() for line in record):
                number += 1
                yield Reject(self.name, uri, f"record {number}", "read", "truncated_record",
                             f"record {number}: file ends without the '$$$$' record terminator")

    def _sqlite(self, uri: str) -> Iterator[SourceItem | Reject]:
        with _local_path(uri, self.config.storage_options) as path, closing(_connect_read_only(path)) as db:
            try:
                rows = db.execute(SQLITE_QUERY)
            except sqlite3.DatabaseError as exc:
                raise WrongHeader(f"not a ChEMBL release database: {exc}") from exc
            for molregno, chembl_id, pref_name, smiles in rows:
                payload = {"smiles": smiles or "", "fields": {"molregno": molregno, "pref_name": pref_name}}
                yield self._item(uri, f"molregno {molregno}", chembl_id or "", payload)

    def convert(self, item: SourceItem) -> Conversion:
        payload = item.payload
        chembl_id = payload["chembl_id"]
        standardize = self.config.standardize

        def make() -> Sample:
            if "record" in payload:
                mol, fields = _sdf_molecule(payload["record"], standardize)
                original = None
            else:
                original, fields = payload["smiles"], payload["fields"]
                mol = mol_from_smiles(original)
            metadata = {"chembl_id": chembl_id, **{k: v for k, v in fields.items() if v is not None}}
            return molecule_sample(mol, chembl_id, standardize=standardize, metadata=metadata,
                                   original=original, key=self.config.molecule_key)

        return convert_molecule(item, make)


def detect_format(uri: str, storage_options: dict[str, Any] | None = None) -> ChemblFormat | None:
    """The format from the first bytes; None for an empty file (the reader then rejects it as empty)."""
    with open_binary(uri, storage_options) as stream:
        head = stream.read(8192)
    if not head:
        return None
    if head.startswith(SQLITE_MAGIC):
        return ChemblFormat.SQLITE
    text = head.decode("utf-8", errors="replace")
    first = text.split("\n", 1)[0]
    if first.startswith("chembl_id\tcanonical_smiles"):
        return ChemblFormat.CHEMREPS
    if re.search(r"^M  END|V[23]000|^\$\$\$\$", text, re.MULTILINE):
        return ChemblFormat.SDF
    if _pick(next(csv.reader([first], delimiter=sniff_delimiter(first))), SMILES_COLUMNS):
        return ChemblFormat.CSV
    raise WrongHeader(f"not a ChEMBL chemreps, SDF, CSV or SQLite file (first line {first[:120]!r})")


def _sdf_molecule(record: str, standardize: bool) -> tuple[Chem.Mol, dict[str, Any]]:
    """The molecule of one SDF record (a raw ctab when standardizing, else sanitized) and its data fields."""
    supplier = Chem.ForwardSDMolSupplier(io.BytesIO(record.encode()), sanitize=False, removeHs=False)
    parsed = next(supplier, None)
    fields = {} if parsed is None else {_snake(k): v for k, v in parsed.GetPropsAsDict().items()}
    fields = {k: v for k, v in fields.items() if k not in map(_snake, SDF_ID_FIELDS)}
    molblock = record.split("\nM  END", 1)[0] + "\nM  END\n"
    # parse_molblock is the ChEMBL pipeline's own reader (keeps wedging for stereo); plain RDKit otherwise.
    mol = parse_molblock(molblock) if standardize else Chem.MolFromMolBlock(molblock, sanitize=False)
    if mol is None:
        raise InvalidMolblock("RDKit cannot read the record's connection table")
    if not standardize:  # the pipeline standardizes the raw ctab (it repairs some, e.g. 5-valent nitro)
        try:
            Chem.SanitizeMol(mol)
        except Chem.MolSanitizeException as exc:
            raise InvalidMolblock(f"connection table fails sanitization: {exc}") from exc
        Chem.AssignChiralTypesFromBondDirs(mol)
        Chem.AssignStereochemistry(mol, cleanIt=True, force=True)
    return mol, fields


def _sdf_id(record: list[str]) -> str:
    """The ChEMBL id: a ``chembl_id``-like data field, else a title line that is one."""
    for index, line in enumerate(record[:-1]):
        match = re.match(r">\s*<([^>]+)>", line)
        if match and match.group(1) in SDF_ID_FIELDS:
            return record[index + 1].strip()
    title = record[0].strip() if record else ""
    return title if re.fullmatch(r"CHEMBL\d+", title) else ""


def _pick(columns: Any, names: tuple[str, ...]) -> str | None:
    return next((name for name in names if name in (columns or ())), None)


def _snake(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or name


@contextmanager
def _local_path(uri: str, storage_options: dict[str, Any] | None) -> Iterator[str]:
    """A local path for SQLite, which cannot read through fsspec: a remote database is downloaded first."""
    fs, path = url_to_fs(uri, **(storage_options or {}))
    if isinstance(fs, LocalFileSystem):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="logos-chembl-") as tmp:
        local = os.path.join(tmp, os.path.basename(path))
        fs.get(path, local)
        yield local


def _connect_read_only(path: str) -> sqlite3.Connection:
    return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
