"""Plain SMILES tables (one SMILES column; csv/tsv/smi/txt, gzip or not; header optional).

Also the pieces the other table-like sources share: ``guarded`` turns a file-level failure (corrupt
gzip, not UTF-8, unreadable, empty) into one ``Reject`` so a bad file never stops a job, and
``molecule_sample`` turns an RDKit molecule into a ``molecule`` sample, optionally through the ChEMBL
Structure Pipeline (standardize, then parent) — the step that dominates the cost of a molecule.
"""

from __future__ import annotations

import csv
import functools
import itertools
import os
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from chembl_structure_pipeline import standardizer
from chembl_structure_pipeline.exclude_flag import exclude_flag
from rdkit import Chem

from grammar.formats import FORMATS
from grammar.molecule import Molecule, mol_from_smiles
from pipeline.groups import molecule_group
from pipeline.io import open_text
from pipeline.records import Reject, Sample, SourceItem, dedup_key
from pipeline.sources.base import Conversion, reason_code, reject_from

SMILES_HEADERS = frozenset({"smiles", "canonical_smiles", "smi", "isomeric_smiles", "smiles_string"})


class WrongHeader(ValueError):
    """A table whose header lacks a column the reader needs."""

    reason_code = "wrong_header"


class ChemblExcluded(ValueError):
    """The ChEMBL Structure Pipeline's exclusion rule (metals, >7 borons): it does not standardize these."""

    reason_code = "chembl_excluded"


def guarded(source: str, uri: str, items: Iterable[SourceItem | Reject]) -> Iterator[SourceItem | Reject]:
    """Yield ``items``; a failure while reading becomes one ``Reject`` after the items read so far.

    A file that yields nothing is rejected as empty. Errors are data here (see ``pipeline.sources.base``),
    so any exception raised by the reader ends this file only.
    """
    last: SourceItem | Reject | None = None
    try:
        for last in items:
            yield last
    except Exception as exc:
        where = f"after {last.locator}" if last is not None else "file"
        yield Reject(source, uri, where, "read", reason_code(exc), f"{uri}: {exc}")
        return
    if last is None:
        yield Reject(source, uri, "file", "read", "empty_file", f"{uri}: no records (empty or header only)")


def sniff_delimiter(first_line: str, default: str = ",") -> str:
    try:
        return csv.Sniffer().sniff(first_line, delimiters=",;\t").delimiter
    except csv.Error:  # one column: nothing to sniff
        return default


def file_stem(uri: str) -> str:
    name = os.path.basename(uri.rstrip("/"))
    return name[: -len(".gz")] if name.endswith(".gz") else name


class ChemWithParsedSmarts(types.ModuleType):
    """``rdkit.Chem`` as the ChEMBL Structure Pipeline's standardizer module sees it, with ``MolFromSmarts``
    memoized; every other name is ``rdkit.Chem``'s own.

    Why: ``get_fragment_parent_mol`` re-reads its solvent and salt tables and re-parses their 172 SMARTS on
    every call (and ``flatten_tartrate_mol``/``cleanup_drawing_mol`` one pattern each): standardize + parent
    took 2.99 ms per molecule as shipped, 1.48 ms with the patterns parsed once
    (``benchmarks/bench_chembl_standardize.py``, 2,000 bundled ChEMBL molecules). The module only matches
    against these query molecules (``HasSubstructMatch``, ``GetSubstructMatches``, atom/bond counts,
    ``AdjustQueryProperties``, which returns a copy), never edits them, so one parsed copy per pattern gives
    the same results; ``tests/pipeline/sources/test_molecule_keys.py`` checks that against the unpatched
    library run in a separate interpreter.
    """

    def __init__(self) -> None:
        super().__init__(Chem.__name__)

    def __getattr__(self, name: str) -> Any:
        return getattr(Chem, name)

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def MolFromSmarts(smarts: str, *args: Any) -> Chem.Mol:  # RDKit's name
        return Chem.MolFromSmarts(smarts, *args)


standardizer.Chem = ChemWithParsedSmarts()


def chembl_parent(mol: Chem.Mol) -> Chem.Mol:
    """ChEMBL Structure Pipeline: standardize, then the parent (salts, solvents, isotopes, charge removed)."""
    if exclude_flag(mol, includeRDKitSanitization=False):
        raise ChemblExcluded("excluded by the ChEMBL Structure Pipeline (metal, or more than 7 boron atoms)")
    parent, _ = standardizer.get_parent_mol(standardizer.standardize_mol(mol, check_exclusion=False))
    return parent


class MoleculeKey(StrEnum):
    """What a molecule's exact-dedup key is built from. Exact dedup compares keys across sources, so every
    molecule source (``smiles``, ``chembl``) has the same default and a dataset must use one choice throughout.

    The default is the record's own text, as a protein's key is its sequence: the RDKit canonical isomeric
    SMILES of the (standardized, with ``standardize``) molecule, which already costs nothing extra. The same
    molecule written with another atom order, aromatic or Kekulé, merges; two tautomers (``O=c1cc[nH]cc1`` and
    ``Oc1ccncc1``) stay two records, as they are two texts. The standard InChIKey also merges tautomers (InChI's
    mobile hydrogens) but InChI generation costs more than the parse and canonical SMILES together: the default
    ingest path runs at 0.19x of that floor with it (``benchmarks/bench_ingest.py``, "molecule (key=inchikey)").
    """

    CANONICAL_SMILES = "canonical_smiles"  # RDKit canonical isomeric SMILES of the (standardized) molecule
    INCHIKEY = "inchikey"  # standard InChIKey (canonical SMILES where InChI has none): also merges tautomers


def molecule_sample(
    mol: Chem.Mol, source_id: str, *, standardize: bool, metadata: dict[str, Any], original: str | None = None,
    key: MoleculeKey = MoleculeKey.CANONICAL_SMILES,
) -> Sample:
    """A ``molecule`` sample of ``mol`` (already sanitized, or a raw ctab when ``standardize``).

    ``original`` is the input SMILES; it is kept in the metadata when the output differs from it. Every key
    (text, dedup key, split group) comes from the molecules parsed here; nothing downstream parses it again.
    """
    if standardize:
        mol = chembl_parent(mol)
    smiles = Chem.MolToSmiles(mol)
    parsed_from = original  # the SMILES ``mol`` was parsed from (None: a ctab or a standardized molecule)
    if standardize or smiles != original:
        # Re-reading RDKit's output makes the text a fixed point of the grammar's own parse-and-canonicalize
        # (rare stereo cases change on a second pass). An input string that parsed to exactly this output
        # already is that fixed point and needs no re-read.
        mol, parsed_from = mol_from_smiles(smiles), smiles
        smiles = Chem.MolToSmiles(mol)
    inchikey = Chem.MolToInchiKey(mol) if key is MoleculeKey.INCHIKEY else ""
    canonical = inchikey or smiles  # InChI has no key for some organometallics
    key_of_record = dedup_key("molecule", canonical)
    group = molecule_group(text_mol(smiles, mol, parsed_from), key_of_record)
    if original is not None and original != smiles:
        metadata = {**metadata, "original_smiles": original}
    molecule = Molecule(smiles, source_id)
    text = FORMATS["molecule"].write(molecule)
    return Sample("molecule", "molecule", text, source_id, key_of_record, metadata, split_group=group, obj=molecule)


def text_mol(smiles: str, mol: Chem.Mol, parsed_from: str | None) -> Chem.Mol:
    """The molecule a reader of the text ``smiles`` gets (the grammar's parse, canonicalize, parse: what
    ``pipeline.split.record_group`` derives the scaffold from), reusing ``mol`` (parsed from
    ``parsed_from``, with ``MolToSmiles(mol) == smiles``) in the usual case where that is it already."""
    if parsed_from == smiles:
        return mol
    mol = mol_from_smiles(smiles)  # rare: RDKit's output changed on the re-read above
    again = Chem.MolToSmiles(mol)
    return mol if again == smiles else mol_from_smiles(again)


def convert_molecule(item: SourceItem, make: Callable[[], Sample]) -> Conversion:
    """Run ``make()`` -> Sample; a chemistry error (invalid SMILES, valence, exclusion) becomes a reject."""
    try:
        return Conversion(samples=[make()])
    except ValueError as exc:  # GrammarError, RDKit sanitization errors and ChemblExcluded are ValueErrors
        return Conversion(rejects=[reject_from(item, "convert", exc)])


@dataclass(frozen=True, slots=True)
class SmilesConfig:
    column: int | str = 0  # 0-based position, or a header name
    header: bool | None = None  # None: a header when the first line's SMILES cell is a known name ("SMILES")
    id_column: int | str | None = None  # source ids; default "<file>:line N"
    delimiter: str | None = None  # None: sniffed from the first line (',', ';', tab), else one column
    standardize: bool = False  # ChEMBL Structure Pipeline: ~5x the conversion cost
    molecule_key: MoleculeKey = MoleculeKey.CANONICAL_SMILES  # see MoleculeKey
    storage_options: dict[str, Any] | None = field(default=None, hash=False)


@dataclass
class SmilesSource:
    name: ClassVar[str] = "smiles"
    suffixes: ClassVar[tuple[str, ...]] = (".smi", ".smi.gz", ".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")
    chunk_items: ClassVar[int] = 4096

    config: SmilesConfig = field(default_factory=SmilesConfig)

    def read(self, uri: str) -> Iterator[SourceItem | Reject]:
        return guarded(self.name, uri, self._rows(uri))

    def _rows(self, uri: str) -> Iterator[SourceItem | Reject]:
        config = self.config
        with open_text(uri, config.storage_options) as stream:
            lines = iter(stream)
            first = next(lines, None)
            if first is None:
                return
            delimiter = config.delimiter or sniff_delimiter(first)
            reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter, skipinitialspace=True)
            rows = (row for row in reader if row)
            head = next(rows, None)
            if head is None:
                return
            header = config.header
            if header is None:
                named = isinstance(config.column, str)
                header = named or _cell(head, int(config.column)).strip().lower() in SMILES_HEADERS
            columns = head if header else []
            smiles_at = _position(config.column, columns)
            id_at = None if config.id_column is None else _position(config.id_column, columns)
            stem = file_stem(uri)
            for row in rows if header else itertools.chain([head], rows):
                locator = f"line {reader.line_num}"
                source_id = _cell(row, id_at) if id_at is not None else f"{stem}:{locator}"
                # Only the first word is the SMILES: a .smi line's name or a CXSMILES extension may follow.
                smiles = (_cell(row, smiles_at).split() or [""])[0]
                yield SourceItem(self.name, uri, locator, {"smiles": smiles, "id": source_id})

    def convert(self, item: SourceItem) -> Conversion:
        smiles = item.payload["smiles"]

        def make() -> Sample:
            mol = mol_from_smiles(smiles)
            return molecule_sample(mol, item.payload["id"], standardize=self.config.standardize, metadata={},
                                   original=smiles, key=self.config.molecule_key)

        return convert_molecule(item, make)


def _cell(row: list[str], position: int) -> str:
    return row[position] if position < len(row) else ""


def _position(column: int | str, header: list[str]) -> int:
    if isinstance(column, int):
        return column
    if column not in header:
        raise WrongHeader(f"column {column!r} not in the header {header}")
    return header.index(column)
