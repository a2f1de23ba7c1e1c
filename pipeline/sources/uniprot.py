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
"""

from __future__ import annotations

import io
import itertools
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from Bio import SwissProt
from Bio.SeqIO.FastaIO import SimpleFastaParser

from grammar.formats import FORMATS
from grammar.protein import RESIDUE_ALPHABET, Chain, Protein
from pipeline.io import open_text
from pipeline.records import Reject, Sample, SourceItem, dedup_key
from pipeline.sources.base import Conversion, metadata_without_nones, reject_from
from pipeline.sources.smiles import WrongHeader, guarded

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


ALLOWED_INPUT = frozenset(RESIDUE_ALPHABET + AMBIGUITY_CODES)
AMBIGUOUS = frozenset(AMBIGUITY_CODES)
TO_UNKNOWN = str.maketrans({code: "X" for code in AMBIGUITY_CODES})


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
