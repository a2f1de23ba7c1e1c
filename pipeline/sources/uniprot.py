"""Protein sequence databases: UniProtKB FASTA, UniProt flat files (.dat), UniRef FASTA, wwPDB pdb_seqres.txt.

Each record becomes one ``protein`` sample ``<ProteinS>SEQ<ProteinE>``. Files stream record by record
through ``pipeline.io`` (fsspec URIs, gzip detected from the bytes); Biopython does the parsing:
``Bio.SeqIO.FastaIO.SimpleFastaParser`` for FASTA, ``Bio.SwissProt`` for flat-file entries (each entry is
cut at its ``//`` line here and parsed on its own, so one bad entry is one reject and a file that ends
inside an entry is a ``truncated_record`` reject while the entries before it are kept).

FASTA headers are read per record, so a file may mix styles:

- UniProtKB ``>sp|ACC|NAME desc OS=.. OX=.. GN=.. PE=n SV=n`` (``sp`` reviewed, ``tr`` unreviewed; ``OX``,
  ``GN``, ``PE``, ``SV`` optional: pre-2017 files lack ``OX``, isoforms lack ``PE``/``SV``);
- UniRef ``>UniRef50_ACC desc n=N Tax=.. TaxID=.. RepID=..``: the cluster id and size are kept;
- wwPDB seqres ``>101m_A mol:protein length:154  MYOGLOBIN``: ``mol:na`` records are rejected as
  ``not_protein`` (nucleic acids have no protein sample); a declared length that differs from the
  sequence is ``length_mismatch``;
- anything else: the first word of the header is the id, no other metadata.

Alphabet policy (the grammar's residue alphabet is the 20 standard amino acids plus U, O and X):

- U (selenocysteine), O (pyrrolysine) and X (unknown) are kept as they are: each is one grammar token;
- B (Asx: D or N), Z (Glx: E or Q) and J (Xle: I or L) are ambiguity codes with no token of their own:
  ``ambiguous_residues: x`` (default) writes them as X, the grammar's unknown residue, which keeps the
  length and the known positions, and counts them per code in the metadata (``ambiguous_residues``);
  ``ambiguous_residues: reject`` rejects the record as ``ambiguous_residue``;
- any other character (lower case, ``*`` stop, ``-`` gap, digits) rejects the record as ``non_amino_acid``:
  UniProt, UniRef and the PDB write none, so one is a sign of a nucleotide, alignment or translated file;
- an empty sequence is ``empty_sequence``; ``min_length``/``max_length`` bound the length
  (``sequence_too_short``/``sequence_too_long``).

Dedup key: the sequence (``dedup_key("protein", sequence)``, the same key the PDB source gives a chain).
Split: a UniRef record's split group is its cluster, ``uniref:<cluster id>`` (``Sample.split_group``), so
the split stage keeps each UniRef cluster whole without re-clustering it; other records leave the group
empty and are grouped by the protein clustering of ``pipeline.split``.

Batch path (ingest's ``read_blocks``/``convert_block``, see ``pipeline.sources.base``): FASTA files are read in
blocks of records (two lists of strings: headers and sequences, from ``SimpleFastaParser``) and a block becomes
one Arrow batch of shard rows. Measured on the H. pylori proteome (``benchmarks/bench_ingest.py``), the per-record
path spent ~40 us a record against ~2 us for Biopython's own parse: row dicts and ``Table.from_pylist`` (~7 us),
the header regexes and ``_tagged_fields`` (~4 us), the metadata JSON (~4 us), the tokenizer's per-letter loop
(~8 us), per-record ``SourceItem``/``Sample``/``Protein`` objects and their pickling. The block path instead

- checks the alphabet and the length limits of all the block's sequences at once (with the native tokenizer its
  numpy lookup below marks every letter outside the alphabet; otherwise a numpy table of the grammar's residue
  letters over the block's bytes);
- tokenizes with a numpy lookup from letter to token id when the tokenizer is the native one (each residue
  letter is one token, ``grammar.tokenizer``; tested equal to the tokenizer's own ids on real sequences),
  otherwise with the tokenizer's batch call;
- reads standard UniProtKB headers (``sp|``/``tr|`` with OS, OX, PE, SV and optional GN) with one ``findall``
  over the block's joined headers (``UNIPROTKB_LINE``) and writes their metadata JSON with an f-string: only
  headers whose characters JSON writes as they are (printable ASCII but ``"`` and the backslash) and whose values
  ``fasta_header`` would read alike (``_templated``) take it; other headers (UniRef, pdb_seqres, older styles) are
  read by ``fasta_header`` and written by the shared encoder, as per record;
- hashes the content id and dedup key per record (``content_ids``/``dedup_keys``: ``content_id``/``dedup_key``'s
  values, called once a block).

Records the block path does not write itself (any reject, B/Z/J replacements, a header ``fasta_header`` refuses,
a declared length that differs) go through the per-record ``convert``, so reasons and messages are the per-record
ones; the rows are put back in file order.

Flat files are read in blocks of entries too: the lines are cut into entries at their ``//`` lines by string
search over a batch of lines (``entry_ends``) rather than a Python step per line, each entry is parsed by
``Bio.SwissProt`` as per record (``flatfile_entry``), and the block's sequences take the FASTA block's way from
the alphabet check on (an entry Bio.SwissProt refuses goes the per-record way). Measured on the bundled Swiss-Prot
and UniProtKB entries repeated (1,400 entries, CPU time): 0.60x -> 0.78x of ``Bio.SwissProt.parse``.

The shard rows of both paths are compared byte for byte on every bundled FASTA and flat file and on odd and
damaged ones (``tests/pipeline/sources/test_uniprot_blocks.py``).
"""

from __future__ import annotations

import io
import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
from Bio import SwissProt
from Bio.SeqIO.FastaIO import SimpleFastaParser

from grammar.formats import FORMATS
from grammar.protein import RESIDUE_ALPHABET, Chain, Protein
from grammar.tags import PROTEIN_E, PROTEIN_S
from pipeline.io import CorruptInput, open_binary, open_text
from pipeline.records import (
    METADATA_JSON,
    SHARD_SCHEMA,
    Reject,
    Sample,
    SourceBlock,
    SourceItem,
    content_ids,
    dedup_key,
    dedup_keys,
)
from pipeline.sources.base import Conversion, metadata_without_nones, reject_from
from pipeline.sources.smiles import WrongHeader, guarded

if TYPE_CHECKING:
    from pipeline.convert import ChunkResult

AMBIGUITY_CODES = "BZJ"  # Asx, Glx, Xle
UNIPROTKB_HEADER = re.compile(r"(?P<db>sp|tr)\|(?P<accession>[^|\s]+)\|(?P<entry_name>\S+)(?: (?P<rest>.*))?")
UNIPROTKB_FIELDS = re.compile(r" (OS|OX|GN|PE|SV)=")
UNIREF_HEADER = re.compile(r"(?P<cluster>UniRef(?:100|90|50)_(?P<member>\S+))(?: (?P<rest>.*))?")
UNIREF_FIELDS = re.compile(r" (n|Tax|TaxID|RepID)=")
SEQRES_HEADER = re.compile(
    r"(?P<pdb_id>[0-9a-z]{4}|pdb_[0-9a-z]{8})_(?P<chain>\S+) mol:(?P<mol>\S+) length:(?P<length>\d+)\s*(?P<rest>.*)"
)
FULL_NAME = re.compile(r"Full=([^;]+)")
FRAGMENT_FLAG = re.compile(r"Flags:.*?\b(Fragments?)\b")  # flags are the last DE item, ";"-separated
EVIDENCE = re.compile(r"\s*\{[^}]*\}")  # flat-file evidence tags: "vtd {ECO:0000313|EMBL:EYR77328.1}"


class UniprotFormat(StrEnum):
    FASTA = "fasta"  # UniProtKB, UniRef, pdb_seqres or plain FASTA; the header style is read per record
    FLATFILE = "dat"  # UniProtKB/Swiss-Prot flat file: ID ... // entries


class AmbiguousResidues(StrEnum):
    X = "x"  # B, Z, J written as X (unknown)
    REJECT = "reject"


class SequenceProblem(ValueError):
    """A sequence the policy refuses; ``reason_code`` says which rule."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class TruncatedRecord(ValueError):
    reason_code = "truncated_record"


class InvalidFlatFileEntry(ValueError):
    reason_code = "invalid_flatfile_entry"


@dataclass(frozen=True, slots=True)
class UniprotConfig:
    format: UniprotFormat | None = None  # None: detected from the first line ("ID   " -> flat file, ">" -> FASTA)
    ambiguous_residues: AmbiguousResidues = AmbiguousResidues.X
    min_length: int = 1
    max_length: int | None = None
    storage_options: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.format is not None:
            object.__setattr__(self, "format", UniprotFormat(self.format))
        object.__setattr__(self, "ambiguous_residues", AmbiguousResidues(self.ambiguous_residues))
        if self.min_length < 1 or (self.max_length is not None and self.max_length < self.min_length):
            raise ValueError(f"uniprot: need 1 <= min_length <= max_length, got {self.min_length}, {self.max_length}")


@dataclass
class UniprotSource:
    name: ClassVar[str] = "uniprot"
    suffixes: ClassVar[tuple[str, ...]] = (
        ".fasta", ".fasta.gz", ".fa", ".fa.gz", ".faa", ".faa.gz", ".dat", ".dat.gz", ".txt", ".txt.gz",
    )
    chunk_items: ClassVar[int] = 4096  # FASTA records convert in microseconds; flat-file entries in ~1 ms

    config: UniprotConfig = field(default_factory=UniprotConfig)

    def read(self, uri: str) -> Iterator[SourceItem | Reject]:
        return guarded(self.name, uri, self._items(uri))

    def _items(self, uri: str) -> Iterator[SourceItem | Reject]:
        with open_text(uri, self.config.storage_options) as stream:
            lines = iter(stream)
            first = next((line for line in lines if line.strip()), None)
            if first is None:
                return
            kind = self.config.format or detect_format(first)
            lines = itertools.chain([first], lines)
            if kind is UniprotFormat.FLATFILE:
                yield from self._flatfile(uri, lines)
            else:
                for number, (title, sequence) in enumerate(SimpleFastaParser(lines), start=1):
                    payload = {"format": UniprotFormat.FASTA, "header": title, "sequence": sequence}
                    yield SourceItem(self.name, uri, f"record {number}", payload)

    def read_blocks(self, uri: str, max_records: int) -> Iterator[SourceBlock | SourceItem | Reject]:
        """``read`` in blocks of at most ``max_records`` FASTA records or flat-file entries."""
        return guarded(self.name, uri, self._blocks(uri, max_records))

    def _blocks(self, uri: str, max_records: int) -> Iterator[SourceBlock | SourceItem | Reject]:
        # SimpleFastaParser iterates the text stream itself (a per-line generator around it, as open_text's,
        # costs a fifth of the parse); a decoding error is turned into open_text's reject here instead.
        with open_binary(uri, self.config.storage_options) as binary:
            stream = io.TextIOWrapper(binary, encoding="utf-8", newline=None)
            headers: list[str] = []
            sequences: list[str] = []
            first_record = 1
            try:
                first = next((line for line in stream if line.strip()), None)
                if first is None:
                    return
                kind = self.config.format or detect_format(first)
                if kind is UniprotFormat.FLATFILE:
                    yield from self._flatfile_blocks(uri, first, stream, max_records)
                    return
                for header, sequence in SimpleFastaParser(itertools.chain([first], stream)):
                    headers.append(header)
                    sequences.append(sequence)
                    if len(headers) == max_records:
                        yield self._block(uri, first_record, headers, sequences)
                        first_record += len(headers)
                        headers, sequences = [], []
            except UnicodeDecodeError as exc:
                if headers:  # the records before the failure are kept, as the per-record reader keeps them
                    yield self._block(uri, first_record, headers, sequences)
                raise CorruptInput("not_utf8", f"not UTF-8 text ({exc.reason})") from exc
            except Exception:
                if headers:
                    yield self._block(uri, first_record, headers, sequences)
                raise
            if headers:
                yield self._block(uri, first_record, headers, sequences)

    def _block(self, uri: str, first: int, headers: list[str], sequences: list[str]) -> SourceBlock:
        return SourceBlock(self.name, uri, first, {"header": headers, "sequence": sequences})

    def _flatfile_blocks(self, uri: str, first: str, stream: io.TextIOWrapper,
                         max_records: int) -> Iterator[SourceBlock | Reject]:
        """The entries ``_flatfile`` yields (the text after one ``//`` line up to the next, inclusive) in blocks, and
        the same truncated-entry reject at the end. Lines are taken in batches by ``list.extend`` (which keeps the
        lines read before a failure, as line-by-line reading does) and cut at the ``//`` lines by one regex over
        their joined text (``entry_ends``), instead of a Python step per line (an entry has hundreds of lines)."""
        entries: list[str] = []
        first_entry = 1
        pending, scan = first, 0  # the text not yet cut into entries; where its last (unfinished) line starts
        while True:
            lines: list[str] = []
            failure = None
            try:
                lines.extend(itertools.islice(stream, READ_LINES))
            except Exception as exc:  # raised below, after the entries read before it
                failure = exc
            text, start = pending + "".join(lines), 0
            for end in entry_ends(text, scan):
                entries.append(text[start:end])
                start = end
                if len(entries) == max_records:
                    yield SourceBlock(self.name, uri, first_entry, {"entry": entries}, unit="entry")
                    first_entry, entries = first_entry + len(entries), []
            pending = text[start:]
            scan = pending.rfind("\n") + 1
            if failure is not None:
                if entries:
                    yield SourceBlock(self.name, uri, first_entry, {"entry": entries}, unit="entry")
                raise failure
            if not lines:
                break
        if pending[scan:].startswith("//"):  # the file's last line ends an entry without a newline
            entries.append(pending)
            pending = ""
        if entries:
            yield SourceBlock(self.name, uri, first_entry, {"entry": entries}, unit="entry")
        if pending.strip():
            number = first_entry + len(entries)
            yield Reject(self.name, uri, f"entry {number}", "read", TruncatedRecord.reason_code,
                         f"entry {number}: file ends without the '//' entry terminator")

    def block_items(self, block: SourceBlock, indices: Any = None) -> list[SourceItem]:
        """The block's records (those at ``indices``; default all) as ``read`` yields them."""
        if block.unit == "entry":
            entries = block.columns["entry"]
            return [SourceItem(self.name, block.uri, f"entry {block.first + i}",
                               {"format": UniprotFormat.FLATFILE, "entry": entries[i]})
                    for i in (range(len(entries)) if indices is None else indices)]
        headers, sequences = block.columns["header"], block.columns["sequence"]
        return [SourceItem(self.name, block.uri, f"record {block.first + i}",
                           {"format": UniprotFormat.FASTA, "header": headers[i], "sequence": sequences[i]})
                for i in (range(len(headers)) if indices is None else indices)]

    def convert_block(self, block: SourceBlock, tokenizer: Any, engine: str = "python") -> ChunkResult:
        """Shard rows of a whole block of FASTA records or flat-file entries (the batch path of the module
        docstring)."""
        if block.unit == "entry":
            sequences, source_ids, metadata, parsed = flatfile_block(block.columns["entry"])
            return self._block_rows(block, tokenizer, engine, sequences,
                                    lambda fast, lengths: (source_ids, metadata, [""] * len(sequences)), parsed)
        headers = block.columns["header"]
        return self._block_rows(block, tokenizer, engine, block.columns["sequence"],
                                lambda fast, lengths: block_headers(headers, fast, lengths))

    def _block_rows(self, block: SourceBlock, tokenizer: Any, engine: str, sequences: list[str],
                    describe: Callable[[np.ndarray, np.ndarray], tuple[list, list, list]],
                    parsed: np.ndarray | None = None) -> ChunkResult:
        """The rows of a block's sequences: ``describe(fast, lengths)`` gives the source ids, metadata JSON and split
        groups of the records ``fast`` marks (and may unmark one for the per-record path); records ``parsed`` leaves
        unmarked go the per-record way from the start."""
        from pipeline.convert import ChunkStats, block_result

        count = len(sequences)
        lengths = np.fromiter(map(len, sequences), np.int64, count)
        offsets = np.zeros(count + 1, np.int64)
        np.cumsum(lengths + 2, out=offsets[1:])
        # Each record as \x01 letters \x02 (one byte per letter: a non-ASCII letter becomes "?"; one byte per tag),
        # so one table lookup shows every letter outside the alphabet and gives every token id.
        codes = np.frombuffer(("\x01" + "\x02\x01".join(sequences) + "\x02").encode("ascii", "replace"), np.uint8)
        table = letter_token_table(tokenizer)
        fast = lengths >= self.config.min_length
        if parsed is not None:
            fast &= parsed
        if self.config.max_length is not None:
            fast &= lengths <= self.config.max_length
        if table is not None:  # the native tokenizer's ids: -1 for a letter outside the alphabet, the tags are tokens
            token_ids = table[codes]
            if token_ids.min() < 0:
                fast &= _per_record(token_ids < 0, offsets) == 0
        else:  # the two tag bytes of each record count as outside RESIDUE_BYTES
            outside = ~RESIDUE_BYTES[codes]
            if np.count_nonzero(outside) != 2 * count:  # some record holds a letter outside the alphabet
                fast &= _per_record(outside, offsets) == 2
        source_ids, metadata, groups = describe(fast, lengths)
        everything = bool(fast.all())

        def kept(values: list) -> list:
            return values if everything else list(itertools.compress(values, fast))

        texts = [f"{PROTEIN_S}{sequence}{PROTEIN_E}" for sequence in kept(sequences)]
        if table is not None:
            token_ids = token_ids if everything else token_ids[np.repeat(fast, lengths + 2)]
            kept_offsets = np.zeros(len(texts) + 1, np.int32)
            np.cumsum(lengths[fast] + 2, out=kept_offsets[1:])
            input_ids = pa.ListArray.from_arrays(pa.array(kept_offsets), pa.array(token_ids))
        else:  # not the native tokenizer: its own batch call; a text it refuses goes the per-record way
            encoded = tokenizer.encode_batch_results(texts, engine=engine)
            refused = [isinstance(ids, Exception) for ids in encoded]
            if any(refused):
                fast[np.flatnonzero(fast)[np.array(refused, bool)]] = False
                everything = False
                texts = [t for t, r in zip(texts, refused, strict=True) if not r]
            input_ids = pa.array([ids for ids in encoded if not isinstance(ids, Exception)], pa.list_(pa.int32()))
        rows = np.flatnonzero(fast)
        written = len(rows)
        batch = pa.RecordBatch.from_arrays([
            pa.array(content_ids("protein", texts), pa.string()),
            same_string(self.name, written),
            pa.array(kept(source_ids), pa.string()),
            same_string("protein", written),
            same_string("protein", written),
            pa.array(texts, pa.large_string()),
            input_ids,
            pa.array(lengths[rows] + 2, pa.int32()),
            pa.array(dedup_keys("protein", kept(sequences)), pa.string()),
            pa.array(kept(metadata), pa.string()),
            same_string(block.uri, written),
            pa.array(kept(groups), pa.string()) if any(groups) else same_string("", written),
            pa.nulls(written, pa.list_(pa.string())),
        ], schema=SHARD_SCHEMA)
        by_task = Counter({"protein": written}) if written else Counter()
        stats = ChunkStats(written, written, 0, 0, written, int(lengths[rows].sum()) + 2 * written, by_task,
                           Counter(by_task))
        return block_result(self, tokenizer, engine, block, batch, stats, rows, np.flatnonzero(~fast))

    def _flatfile(self, uri: str, lines: Iterator[str]) -> Iterator[SourceItem | Reject]:
        entry: list[str] = []
        number = 0
        for line in lines:
            entry.append(line)
            if line.startswith("//"):
                number += 1
                yield SourceItem(self.name, uri, f"entry {number}", {"format": UniprotFormat.FLATFILE,
                                                                     "entry": "".join(entry)})
                entry = []
        if any(line.strip() for line in entry):
            number += 1
            yield Reject(self.name, uri, f"entry {number}", "read", TruncatedRecord.reason_code,
                         f"entry {number}: file ends without the '//' entry terminator")

    def convert(self, item: SourceItem) -> Conversion:
        payload = item.payload
        try:
            if payload["format"] is UniprotFormat.FLATFILE:
                source_id, raw, metadata = flatfile_entry(payload["entry"])
            else:
                source_id, metadata = fasta_header(payload["header"])
                raw = payload["sequence"]
                declared = metadata.pop("declared_length", None)  # pdb_seqres states each record's length
                if declared is not None and declared != len(raw):
                    raise SequenceProblem("length_mismatch", f"header declares {declared} residues, "
                                                             f"the record holds {len(raw)}")
            sequence, replaced = self.policy_sequence(raw)
        except ValueError as exc:
            return Conversion(rejects=[reject_from(item, "convert", exc)])
        if replaced:
            metadata["ambiguous_residues"] = replaced
        protein = Protein((Chain(sequence, chain_id=metadata.get("chain_id", "")),), source_id=source_id)
        text = FORMATS["protein"].write(protein)
        cluster = metadata.get("uniref_cluster_id")
        return Conversion(samples=[Sample("protein", "protein", text, source_id, dedup_key("protein", sequence),
                                          metadata, split_group=f"uniref:{cluster}" if cluster else "", obj=protein)])

    def policy_sequence(self, raw: str) -> tuple[str, dict[str, int]]:
        """The sequence as the grammar writes it, and the ambiguity codes replaced (see the module docstring)."""
        config = self.config
        if not raw:
            raise SequenceProblem("empty_sequence", "the record has no sequence")
        letters = set(raw)
        outside = sorted(letters - ALLOWED_INPUT)
        if outside:
            raise SequenceProblem("non_amino_acid", f"characters {''.join(outside)!r} are not amino-acid codes "
                                                    f"({RESIDUE_ALPHABET} or the ambiguity codes {AMBIGUITY_CODES})")
        replaced: dict[str, int] = {}
        if letters & AMBIGUOUS:
            counts = Counter(c for c in raw if c in AMBIGUOUS)
            if config.ambiguous_residues is AmbiguousResidues.REJECT:
                raise SequenceProblem("ambiguous_residue", f"ambiguity codes {dict(sorted(counts.items()))} "
                                                           "(ambiguous_residues: reject)")
            replaced = dict(sorted(counts.items()))
            raw = raw.translate(TO_UNKNOWN)
        if len(raw) < config.min_length:
            raise SequenceProblem("sequence_too_short", f"{len(raw)} residues < min_length {config.min_length}")
        if config.max_length is not None and len(raw) > config.max_length:
            raise SequenceProblem("sequence_too_long", f"{len(raw)} residues > max_length {config.max_length}")
        return raw, replaced


def same_string(value: str, count: int) -> pa.StringArray:
    """``count`` times ``value`` as an Arrow string array, made by Arrow (``pa.array`` of a list: ~25x slower)."""
    return pa.repeat(pa.scalar(value, pa.string()), count)


def _per_record(flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """How many of ``flags`` (one per byte of a block's codes) fall in each record (``offsets`` bound them)."""
    before = np.concatenate(([0], np.cumsum(flags)))
    return before[offsets[1:]] - before[offsets[:-1]]


ALLOWED_INPUT = frozenset(RESIDUE_ALPHABET + AMBIGUITY_CODES)
AMBIGUOUS = frozenset(AMBIGUITY_CODES)
TO_UNKNOWN = str.maketrans({code: "X" for code in AMBIGUITY_CODES})
RESIDUE_BYTES = np.zeros(256, bool)  # byte -> is a letter of the grammar's residue alphabet (the block path)
RESIDUE_BYTES[np.frombuffer(RESIDUE_ALPHABET.encode(), np.uint8)] = True

# Block path: the fields of standard UniProtKB headers, found by one ``findall`` over the block's joined headers
# (module docstring): one match per line, the groups empty for a line of another style. A header takes this way
# only if ``_templated`` confirms that ``fasta_header`` would read the same values from it. No text value may hold
# "=" (a header whose does goes the per-record way), so no value can hide a tag ``_tagged_fields`` would split at:
# every " OS=", " OX=", " GN=", " PE=", " SV=" of a matching line is one the pattern consumed.
_NUMBER = r"[1-9][0-9]*"  # no leading zero, which int() would drop
UNIPROTKB_LINE = re.compile(
    rf"^(?:(sp|tr)\|([^|\s]+)\|(\S+) ([^=\n]+) OS=([^=\n]+) OX=({_NUMBER})(?: GN=([^=\n]+))? PE=({_NUMBER}) "
    rf"SV=({_NUMBER})|[^\n]*)$", re.MULTILINE)
JSON_ESCAPED = re.compile(r'[^ -~]|["\\]')  # a character json.dumps (ensure_ascii) writes escaped
# The bytes json.dumps writes as they are (printable ASCII but '"' and the backslash), and the newline joining lines.
AS_IS_BYTES = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\') + b"\n"
SPACE, EQUALS = ord(" "), ord("=")
READ_LINES = 4096  # flat-file lines taken at once by the block reader


def _written_as_is(text: str) -> bool:
    """Whether JSON writes every character of ``text`` (lines joined by newlines) as it is. (Deleting the allowed
    bytes with ``bytes.translate`` and finding none left: ~8x faster than a regex search over a block's headers.)"""
    return text.isascii() and not text.encode("ascii").translate(None, AS_IS_BYTES)


def _templated(headers: str) -> bool:
    """Whether the UNIPROTKB_LINE values of ``headers`` (matching lines, joined) are those of ``fasta_header``:
    no value with outer spaces (``_tagged_fields`` strips them), which needs a double space or a space after "=".
    (Compared over the UTF-8 bytes with numpy: ``"  " in text`` took a tenth of a block's header time; no byte of a
    multi-byte UTF-8 character is a space or "=".)"""
    data = np.frombuffer(headers.encode(), np.uint8)
    before = data[:-1]
    return not (((before == SPACE) | (before == EQUALS)) & (data[1:] == SPACE)).any()


def _uniprotkb_json(db: str, accession: str, name: str, description: str, organism: str, taxon: str, gene: str,
                    existence: str, version: str) -> str:
    """METADATA_JSON of ``fasta_header``'s metadata for one UNIPROTKB_LINE match (sorted keys, no escapes)."""
    gene_field = f'"gene": "{gene}", ' if gene else ""
    return (f'{{"accession": "{accession}", "description": "{description}", "entry_name": "{name}", '
            f'{gene_field}"organism": "{organism}", "protein_existence": {existence}, '
            f'"reviewed": {"true" if db == "sp" else "false"}, "sequence_version": {version}, "taxon_id": {taxon}}}')


def entry_ends(text: str, line_start: int) -> Iterator[int]:
    """The offsets just after each flat-file terminator line (a line that starts with "//") of ``text`` that is
    complete with its newline, from ``line_start`` (where a line starts) on. ``str.find`` of "\\n//": a regex
    ``^//`` (multi-line) tried every position and took a fifth of an entry's ingest."""
    while True:
        if text.startswith("//", line_start):
            begin = line_start
        else:
            found = text.find("\n//", line_start)
            if found < 0:
                return
            begin = found + 1
        newline = text.find("\n", begin)
        if newline < 0:
            return
        line_start = newline + 1
        yield line_start


def flatfile_block(entries: list[str]) -> tuple[list[str], list, list, np.ndarray]:
    """(sequences, source ids, metadata JSON, parsed) of a block's flat-file entries, each parsed by
    ``flatfile_entry`` as ``convert`` parses it; an entry that fails is unmarked in ``parsed`` (its sequence "") and
    left to the per-record path, which gives its reject."""
    sequences: list[str] = []
    source_ids: list[str | None] = []
    metadata: list[str | None] = []
    parsed = np.ones(len(entries), bool)
    for index, text in enumerate(entries):
        try:
            source_id, sequence, fields = flatfile_entry(text)
        except Exception:  # any failure: the per-record path turns it into its reject
            parsed[index] = False
            sequences.append("")
            source_ids.append(None)
            metadata.append(None)
            continue
        sequences.append(sequence)
        source_ids.append(source_id)
        metadata.append(METADATA_JSON(fields))
    return sequences, source_ids, metadata, parsed


def block_headers(headers: list[str], fast: np.ndarray, lengths: np.ndarray) -> tuple[list, list, list]:
    """(source ids, metadata JSON, split groups) of a block's FASTA headers, for the records ``fast`` marks;
    a record whose header the per-record path must handle (a reject, a declared length that differs) is
    unmarked in ``fast`` instead."""
    count = len(headers)
    joined = "\n".join(headers)
    if _written_as_is(joined):
        found = UNIPROTKB_LINE.findall(joined)
        # The usual block: every header a standard UniProtKB one.
        if all(fields[0] for fields in found) and _templated(joined):
            return [fields[1] for fields in found], [_uniprotkb_json(*fields) for fields in found], [""] * count
        candidates: Any = range(count)
    else:  # only the headers JSON writes as they are take the template
        candidates = [i for i in range(count) if not JSON_ESCAPED.search(headers[i])]
        joined = "\n".join(headers[i] for i in candidates)
        found = UNIPROTKB_LINE.findall(joined)
    matched = [(i, fields) for i, fields in zip(candidates, found, strict=True) if fields[0]]
    if not _templated("\n".join(headers[i] for i, _ in matched)):
        matched = [(i, fields) for i, fields in matched if _templated(headers[i])]
    source_ids: list[str | None] = [None] * count
    metadata: list[str | None] = [None] * count
    for i, fields in matched:
        source_ids[i], metadata[i] = fields[1], _uniprotkb_json(*fields)
    groups = [""] * count
    if len(matched) == count:
        return source_ids, metadata, groups
    for i in np.flatnonzero(fast):
        if metadata[i] is not None:
            continue
        try:
            source_id, fields = fasta_header(headers[i])
        except SequenceProblem:
            fast[i] = False
            continue
        declared = fields.pop("declared_length", None)
        if declared is not None and declared != lengths[i]:
            fast[i] = False
            continue
        source_ids[i], metadata[i] = source_id, METADATA_JSON(fields)
        cluster = fields.get("uniref_cluster_id")
        groups[i] = f"uniref:{cluster}" if cluster else ""
    return source_ids, metadata, groups


_LETTER_TABLES: dict[str, np.ndarray | None] = {}


def letter_token_table(tokenizer: Any) -> np.ndarray | None:
    """Byte -> token id for the residue letters, with ``<ProteinS>``/``<ProteinE>`` at bytes 1 and 2 (the tags of
    ``convert_block``'s codes): the native tokenizer's residue letters are single tokens (``grammar.tokenizer``,
    tested in ``tests/grammar/test_tokenizer.py``). None for another kind, or a vocabulary lacking one of them."""
    if getattr(tokenizer, "kind", None) != "native":
        return None
    key = tokenizer.content_hash
    if key not in _LETTER_TABLES:
        ids = tokenizer.vocab.ids
        wanted = [*RESIDUE_ALPHABET, PROTEIN_S, PROTEIN_E]
        table = None
        if all(ids.get(token, tokenizer.unk_id) != tokenizer.unk_id for token in wanted):
            table = np.full(256, -1, np.int32)
            table[np.frombuffer(RESIDUE_ALPHABET.encode(), np.uint8)] = [ids[c] for c in RESIDUE_ALPHABET]
            table[1], table[2] = ids[PROTEIN_S], ids[PROTEIN_E]
        _LETTER_TABLES[key] = table
    return _LETTER_TABLES[key]


def detect_format(first_line: str) -> UniprotFormat:
    if first_line.startswith("ID   "):
        return UniprotFormat.FLATFILE
    if first_line.startswith(">"):
        return UniprotFormat.FASTA
    raise WrongHeader(f"not a FASTA or UniProt flat file (first line {first_line[:120]!r})")


def fasta_header(title: str) -> tuple[str, dict[str, Any]]:
    """(source id, metadata) of one FASTA header, in whichever of the styles above it is written."""
    if match := UNIPROTKB_HEADER.fullmatch(title):
        description, fields = _tagged_fields(match["rest"] or "", UNIPROTKB_FIELDS)
        metadata = metadata_without_nones(
            accession=match["accession"], entry_name=match["entry_name"], reviewed=match["db"] == "sp",
            description=description or None, organism=fields.get("OS"), taxon_id=_integer(fields.get("OX")),
            gene=fields.get("GN"), protein_existence=_integer(fields.get("PE")),
            sequence_version=_integer(fields.get("SV")),
        )
        return match["accession"], metadata
    if match := UNIREF_HEADER.fullmatch(title):
        description, fields = _tagged_fields(match["rest"] or "", UNIREF_FIELDS)
        metadata = metadata_without_nones(
            uniref_cluster_id=match["cluster"], uniref_cluster_size=_integer(fields.get("n")),
            accession=match["member"], entry_name=fields.get("RepID"), description=description or None,
            organism=fields.get("Tax"), taxon_id=_integer(fields.get("TaxID")),
        )
        return match["cluster"], metadata
    if match := SEQRES_HEADER.fullmatch(title):
        if match["mol"] != "protein":
            raise SequenceProblem("not_protein", f"mol:{match['mol']} record (nucleic acid), not a protein")
        metadata = metadata_without_nones(pdb_id=match["pdb_id"], chain_id=match["chain"],
                                          description=match["rest"].strip() or None)
        metadata["declared_length"] = int(match["length"])
        return f"{match['pdb_id']}_{match['chain']}", metadata
    words = title.split(None, 1)
    if not words:
        raise SequenceProblem("missing_header", "empty FASTA header")
    return words[0], metadata_without_nones(description=words[1] if len(words) > 1 else None)


def flatfile_entry(text: str) -> tuple[str, str, dict[str, Any]]:
    """(primary accession, sequence, metadata) of one flat-file entry, parsed by ``Bio.SwissProt``."""
    try:
        record = SwissProt.read(io.StringIO(text))
    except (ValueError, AssertionError, IndexError, KeyError) as exc:  # what Bio.SwissProt raises on bad lines
        raise InvalidFlatFileEntry(f"Bio.SwissProt cannot read the entry: {exc}") from exc
    if record.sequence_length != len(record.sequence):
        raise SequenceProblem("length_mismatch", f"ID line declares {record.sequence_length} residues, "
                                                 f"SQ block holds {len(record.sequence)}")
    genes = record.gene_name if isinstance(record.gene_name, list) else []
    gene = EVIDENCE.sub("", genes[0].get("Name", "")).strip() if genes else ""
    metadata = metadata_without_nones(
        accession=record.accessions[0], entry_name=record.entry_name, reviewed=record.data_class == "Reviewed",
        secondary_accessions=record.accessions[1:] or None,
        description=_recommended_name(record.description),
        organism=record.organism.rstrip(".") or None,
        taxon_id=int(record.taxonomy_id[0]) if record.taxonomy_id else None, gene=gene or None,
        protein_existence=record.protein_existence or None,
    )
    return record.accessions[0], record.sequence, metadata


def _recommended_name(description: str) -> str | None:
    """The first ``Full=`` name of a DE block (RecName, else SubName), with `` (Fragment)`` for fragments: the
    protein name as UniProt writes it in a FASTA header."""
    match = FULL_NAME.search(description)
    name = EVIDENCE.sub("", match.group(1) if match else description).strip()
    fragment = FRAGMENT_FLAG.search(description)
    return f"{name} ({fragment.group(1)})" if name and fragment else name or None


def _tagged_fields(rest: str, tags: re.Pattern[str]) -> tuple[str, dict[str, str]]:
    """Split ``desc K1=v1 K2=v2`` into the description and {K: v} (values may hold spaces)."""
    parts = tags.split(rest)
    return parts[0].strip(), {key: value.strip() for key, value in zip(parts[1::2], parts[2::2], strict=True)}


def _integer(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
