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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from chembl_structure_pipeline import standardizer
from chembl_structure_pipeline.exclude_flag import exclude_flag
from rdkit import Chem

from grammar.formats import FORMATS
from grammar.lexer import TOKEN_RE
from grammar.molecule import Molecule, mol_from_smiles
from grammar.tags import MOLECULE_E
from pipeline.groups import molecule_group, murcko_group, murcko_scaffold
from pipeline.io import open_text
from pipeline.records import (
    METADATA_JSON,
    SHARD_SCHEMA,
    Reject,
    Sample,
    SourceBlock,
    SourceItem,
    content_id,
    dedup_key,
)
from pipeline.sources.base import Conversion, reason_code, reject_from

if TYPE_CHECKING:
    from pipeline.convert import ChunkResult

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
    mobile hydrogens) but InChI generation costs more than the parse and canonical SMILES together: the smiles
    ingest path runs at 0.23x of that floor with it, 0.52x without (``benchmarks/bench_ingest.py``, "molecule
    (key=inchikey)" and "molecule", 20k MOSES SMILES, CPU time).
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
    smiles, key_of_record, group = molecule_keys(mol, standardize=standardize, original=original, key=key)
    if original is not None and original != smiles:
        metadata = {**metadata, "original_smiles": original}
    molecule = Molecule(smiles, source_id)
    text = FORMATS["molecule"].write(molecule)
    return Sample("molecule", "molecule", text, source_id, key_of_record, metadata, split_group=group, obj=molecule)


def molecule_keys(mol: Chem.Mol, *, standardize: bool, original: str | None, key: MoleculeKey) -> tuple[str, str, str]:
    """(canonical SMILES, dedup key, split group) of ``mol``, parsed from ``original`` (None: a ctab): what a
    molecule record needs, from this one parse (plus a re-read only when RDKit's output is not the input)."""
    smiles, mol, read_back = canonical_molecule(mol, standardize=standardize, original=original)
    key_of_record = dedup_key("molecule", identity(smiles, mol, key))
    return smiles, key_of_record, molecule_group(read_back, key_of_record)


def canonical_molecule(mol: Chem.Mol, *, standardize: bool, original: str | None,
                       written: str | None = None) -> tuple[str, Chem.Mol, Chem.Mol]:
    """(text SMILES, the molecule it was written from, the molecule a reader of the text gets: ``text_mol``).
    ``written``: ``MolToSmiles(mol)`` when the caller has it already (not standardizing)."""
    if standardize:
        mol = chembl_parent(mol)
    smiles = Chem.MolToSmiles(mol) if written is None or standardize else written
    parsed_from = original  # the SMILES ``mol`` was parsed from (None: a ctab or a standardized molecule)
    if standardize or smiles != original:
        # Re-reading RDKit's output makes the text a fixed point of the grammar's own parse-and-canonicalize
        # (rare stereo cases change on a second pass). An input string that parsed to exactly this output
        # already is that fixed point and needs no re-read.
        mol, parsed_from = mol_from_smiles(smiles), smiles
        smiles = Chem.MolToSmiles(mol)
    return smiles, mol, text_mol(smiles, mol, parsed_from)


def identity(smiles: str, mol: Chem.Mol, key: MoleculeKey) -> str:
    """What the dedup key hashes: the text SMILES, or the InChIKey of ``mol`` (the SMILES where InChI has none,
    e.g. some organometallics)."""
    if key is MoleculeKey.INCHIKEY:
        return Chem.MolToInchiKey(mol) or smiles
    return smiles


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
        return guarded(self.name, uri, self._items(uri))

    def _items(self, uri: str) -> Iterator[SourceItem]:
        for line, smiles, source_id in self._rows(uri):
            yield SourceItem(self.name, uri, f"line {line}", {"smiles": smiles, "id": source_id})

    def _rows(self, uri: str) -> Iterator[tuple[int, str, str]]:
        """(line number, SMILES, source id) of each row of the table."""
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
                line = reader.line_num
                source_id = _cell(row, id_at) if id_at is not None else f"{stem}:line {line}"
                # Only the first word is the SMILES: a .smi line's name or a CXSMILES extension may follow.
                smiles = (_cell(row, smiles_at).split() or [""])[0]
                yield line, smiles, source_id

    def convert(self, item: SourceItem) -> Conversion:
        smiles = item.payload["smiles"]

        def make() -> Sample:
            mol = mol_from_smiles(smiles)
            return molecule_sample(mol, item.payload["id"], standardize=self.config.standardize, metadata={},
                                   original=smiles, key=self.config.molecule_key)

        return convert_molecule(item, make)

    # The batch path (``pipeline.sources.base``): with the bare RDKit work at ~0.1 ms a molecule, the per-record
    # objects around it (item, its pickling, sample, conversion, row dict, one tokenizer call) cost about as much
    # as the scaffold. A block converts its molecules in one loop that makes only strings, then tokenizes and
    # hashes them and builds the Arrow batch column by column; rows equal the per-record path's byte for byte.

    def read_blocks(self, uri: str, max_records: int) -> Iterator[SourceBlock | Reject]:
        """``read`` in blocks of at most ``max_records`` rows on consecutive lines (a blank or multi-line row
        starts a new block, so row ``i`` of a block is on line ``first + i``)."""
        return guarded(self.name, uri, self._blocks(uri, max_records))

    def _blocks(self, uri: str, max_records: int) -> Iterator[SourceBlock]:
        smiles: list[str] = []
        ids: list[str] = []
        first = 0
        try:
            for line, one_smiles, source_id in self._rows(uri):
                if smiles and (line != first + len(smiles) or len(smiles) == max_records):
                    yield SourceBlock(self.name, uri, first, {"smiles": smiles, "id": ids}, unit="line")
                    smiles, ids = [], []
                if not smiles:
                    first = line
                smiles.append(one_smiles)
                ids.append(source_id)
        except Exception:  # the rows before a read failure are kept, as the per-record reader keeps them
            if smiles:
                yield SourceBlock(self.name, uri, first, {"smiles": smiles, "id": ids}, unit="line")
            raise
        if smiles:
            yield SourceBlock(self.name, uri, first, {"smiles": smiles, "id": ids}, unit="line")

    def block_items(self, block: SourceBlock, indices: Iterable[int] | None = None) -> list[SourceItem]:
        """The block's rows (those at ``indices``; default all) as ``read`` yields them."""
        smiles, ids = block.columns["smiles"], block.columns["id"]
        return [SourceItem(self.name, block.uri, f"line {block.first + i}", {"smiles": smiles[i], "id": ids[i]})
                for i in (range(len(smiles)) if indices is None else indices)]

    def convert_block(self, block: SourceBlock, tokenizer: Any, engine: str = "python") -> ChunkResult:
        """Shard rows of a block of SMILES rows; a row that fails anywhere (chemistry, tokenizer) is converted
        again by the per-record path, which writes its reject, and rows are put back in line order."""
        from pipeline.convert import ChunkStats, block_result

        config = self.config
        all_smiles, all_ids = block.columns["smiles"], block.columns["id"]
        fast: list[int] = []  # the rows converted here, and their text SMILES, identity and scaffold
        texts: list[str] = []
        identities: list[str] = []
        scaffolds: list[str] = []
        plain = not config.standardize and config.molecule_key is MoleculeKey.CANONICAL_SMILES
        # RDKit only in this loop (the hashing, JSON and tokenizing after it run over whole columns).
        for index, smiles in enumerate(all_smiles):
            mol = Chem.MolFromSmiles(smiles) if smiles.strip() else None  # as mol_from_smiles, which raises
            if mol is None:
                continue  # the per-record path below turns it into the reject with RDKit's reason
            try:
                text = Chem.MolToSmiles(mol)
                if plain and text == smiles:  # RDKit's own canonical input: canonical_molecule's shortcut, inline
                    name, scaffold = text, murcko_scaffold(mol)
                else:
                    text, mol, read_back = canonical_molecule(mol, standardize=config.standardize, original=smiles,
                                                              written=text)
                    name, scaffold = identity(text, mol, config.molecule_key), murcko_scaffold(read_back)
            except Exception:  # the per-record path below turns it into the same reject
                continue
            fast.append(index)
            texts.append(text)
            identities.append(name)
            scaffolds.append(scaffold)
        keys = [dedup_key("molecule", name) for name in identities]
        groups = [murcko_group(scaffold, key) for scaffold, key in zip(scaffolds, keys, strict=True)]
        metadata = ["{}" if text == all_smiles[n] else METADATA_JSON({"original_smiles": all_smiles[n]})
                    for n, text in zip(fast, texts, strict=True)]
        write = FORMATS["molecule"].write
        texts = [write(Molecule(text)) for text in texts]
        input_ids = molecule_token_ids(tokenizer, texts, engine)
        if input_ids is None:  # another tokenizer or engine, or a text it refuses: one text at a time
            encoded = tokenizer.encode_batch_results(texts, engine=engine)
            kept = [n for n, ids in enumerate(encoded) if not isinstance(ids, Exception)]
            if len(kept) < len(encoded):  # the per-record path writes the rejects of the refused ones
                fast, texts, keys, groups, metadata, encoded = (
                    [column[n] for n in kept] for column in (fast, texts, keys, groups, metadata, encoded))
            input_ids = pa.array(encoded, pa.list_(pa.int32()))
        written = len(fast)
        lengths = pc.list_value_length(input_ids)
        batch = pa.RecordBatch.from_arrays([
            pa.array([content_id("molecule", text) for text in texts], pa.string()),
            pa.array([self.name] * written, pa.string()),
            pa.array([all_ids[n] for n in fast], pa.string()),
            pa.array(["molecule"] * written, pa.string()),
            pa.array(["molecule"] * written, pa.string()),
            pa.array(texts, pa.large_string()),
            input_ids,
            lengths,
            pa.array(keys, pa.string()),
            pa.array(metadata, pa.string()),
            pa.array([block.uri] * written, pa.string()),
            pa.array(groups, pa.string()),
            pa.nulls(written, pa.list_(pa.string())),
        ], schema=SHARD_SCHEMA)
        by_task = Counter({"molecule": written}) if written else Counter()
        stats = ChunkStats(written, written, 0, 0, written, pc.sum(lengths).as_py() or 0, by_task, Counter(by_task))
        slow = sorted(set(range(len(all_smiles))) - set(fast))
        return block_result(self, tokenizer, engine, block, batch, stats, fast, slow)


def _cell(row: list[str], position: int) -> str:
    return row[position] if position < len(row) else ""


def _position(column: int | str, header: list[str]) -> int:
    if isinstance(column, int):
        return column
    if column not in header:
        raise WrongHeader(f"column {column!r} not in the header {header}")
    return header.index(column)



def molecule_token_ids(tokenizer: Any, texts: list[str], engine: str) -> pa.ListArray | None:
    """The ids ``tokenizer.encode_batch_results(texts, engine=engine)`` gives molecule texts, as one Arrow list
    array, for the native tokenizer's Python engine; None for any other case, or when a text would be refused
    (the caller then asks the tokenizer text by text).

    One ``findall`` of the lexer's regex over the joined texts instead of one per text: a molecule text is its
    tags around a SMILES, and no lexer piece crosses a tag (only tags contain ``<`` or ``>``: ``grammar.lexer``),
    so the pieces of the joined texts are each text's pieces in turn, each text's last one its end tag. When the
    pieces do not tile the joined texts, or one is not in the vocabulary, None. (A text of tags and upper-case
    letters only, such as ``C``, takes the engine's letter path, whose ids are the same single-letter pieces:
    ``GrammarTokenizer._encode_letters_and_tags``.)"""
    if getattr(tokenizer, "kind", None) != "native" or engine != "python" or not texts:
        return None
    joined = "".join(texts)
    pieces = TOKEN_RE.findall(joined)
    vocab = tokenizer.vocab.ids
    try:
        ids = np.fromiter(map(vocab.__getitem__, pieces), np.int32, len(pieces))
    except KeyError:
        return None
    if sum(map(len, pieces)) != len(joined) or (ids == tokenizer.unk_id).any():
        return None
    ends = np.flatnonzero(ids == vocab[MOLECULE_E]) + 1
    if len(ends) != len(texts):
        return None
    return pa.ListArray.from_arrays(pa.array(np.concatenate(([0], ends)).astype(np.int32)), pa.array(ids))
