"""The antibody source: SAbDab summaries with their structures, OAS data units, and antibodies in PDB entries.

Every antibody becomes an ``antibody`` sample (``grammar.antibody``: variable domains, heavy then light, IMGT
CDRs marked); an antibody–antigen structure also gives an ``antibody_antigen`` sample (paratope and epitope
marked). Variable domains, their chain types and CDRs come from ANARCI (``antibody_numbering``). The input
kind is read off the file name:

- ``*.tsv``: a SAbDab summary (``sabdab_summary_all.tsv`` columns ``pdb Hchain Lchain model antigen_chain
  antigen_type … scfv …``). One item per row, and the row's own chains: ``Hchain``/``Lchain`` (``NA`` when
  absent: nanobodies have no light chain; an scFv names one chain twice), ``antigen_chain`` (``"B | C"``).
  The structure is looked up by PDB id in ``structures_path`` (a directory or URI prefix; default: the TSV's
  directory), as ``{id}.cif[.gz]``, ``{id}.pdb[.gz]``, ``{id}.ent[.gz]`` or ``pdb{id}.ent.gz`` in either case.
  Reject codes: ``structure_missing``; ``chain_not_in_structure`` (a heavy or light chain id the entry
  lacks: the row; an antigen chain: its interaction sample); ``not_heavy_chain``/``not_light_chain``
  (ANARCI finds no such domain on the named chain); ``incomplete_v_domain`` (a CDR outside the sequence);
  ``no_antibody_chain`` (both ids ``NA``); ``no_epitope`` (no antigen atom within the cutoff);
  ``model_not_in_structure`` / ``bad_model`` (the row's ``model``, SAbDab's 0-based model index in file
  order, which the row's chains are read from, is not a model of the entry / not a number).
  Antigens that are not protein or peptide chains (haptens, sugars, nucleic acids) give no interaction
  sample; that is policy, not a reject.
- ``*.csv``/``*.csv.gz``: an OAS data unit, whose first line is the unit's JSON metadata (kept in every
  sample's metadata as ``oas_unit``) and the rest a CSV with ``sequence_alignment_aa_heavy`` and
  ``sequence_alignment_aa_light`` (paired units) or ``sequence_alignment_aa`` (unpaired units; ANARCI's
  chain type says heavy or light). One item per row. Reject codes: ``empty_sequence``, ``non_amino_acid``
  (stop codons ``*`` and other letters outside the protein alphabet), ``not_an_antibody`` (no antibody
  domain), ``chain_type_mismatch`` (a heavy column holding a light chain or the reverse),
  ``incomplete_v_domain``.
- a structure file (``.cif``, ``.pdb``, ``.ent``, gzipped or not): any PDB entry; its protein chains are
  numbered and every antibody found is written. Pairing: each heavy domain with the light domain it touches
  most (V-domain heavy atoms within the cutoff); an scFv chain pairs with itself; the rest stay single.
  T-cell receptor domains are not antibodies and are skipped. The antigen of an antibody: the chains without
  an antibody domain (T-cell receptors included) that touch it, giving an ``antibody_antigen`` sample as for
  SAbDab rows; an antibody that touches none has only its ``antibody`` sample. Identical samples of one
  entry are one sample (``copies`` lists them).

Contacts (paratope, epitope): the pocket rule, any heavy atom within ``contact_cutoff`` (6 Å) of any heavy
atom of the partner, one model (a SAbDab row's own, else the first), asymmetric unit, protein chains only
(glycans and waters out). The epitope is the antigen residues within the cutoff of the antibody's named chains
(whole chains, as SAbDab calls a chain an antigen when it touches the antibody anywhere); the paratope is the
antibody residues within the cutoff of the antigen chains, marked where they fall in the variable domains (the
grammar holds V domains only; contacts on constant domains are counted in ``paratope_outside_v_domain``).
Metadata lists both as residue ids (``"H:52A"``). Antibodies carry no fixed split group: they are clustered
by sequence like the other protein records.
"""

from __future__ import annotations

import csv
import json
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import numpy as np
from fsspec.core import url_to_fs
from scipy.spatial import cKDTree

from grammar.antibody import Antibody, AntibodyAntigen, AntibodyChain
from grammar.formats import FORMATS
from grammar.pocket import DEFAULT_POCKET_CUTOFF, BindingSite, Pocket
from grammar.protein import RESIDUE_ALPHABET, Chain, Protein
from pipeline.io import open_text, read_bytes
from pipeline.records import Reject, Sample, SourceItem, dedup_key
from pipeline.sources.antibody_numbering import NumberingError, VDomain, number_sequences
from pipeline.sources.base import Conversion, metadata_without_nones, reject_from
from pipeline.sources.pdb import SUFFIXES as STRUCTURE_SUFFIXES
from pipeline.sources.pdb import entry_id_from_file_name
from pipeline.sources.pdb_structure import Entry, StructureError, load_entry
from pipeline.sources.pockets import entry_metadata
from pipeline.sources.smiles import WrongHeader, guarded

SABDAB_COLUMNS = ("pdb", "Hchain", "Lchain", "antigen_chain", "antigen_type")
SABDAB_KEPT = ("model", "antigen_name", "heavy_species", "light_species", "antigen_species", "scfv", "engineered",
               "heavy_subclass", "light_subclass", "light_ctype", "resolution", "method", "date")
PROTEIN_ANTIGENS = frozenset({"protein", "peptide"})
OAS_PAIRED = ("sequence_alignment_aa_heavy", "sequence_alignment_aa_light")
OAS_UNPAIRED = "sequence_alignment_aa"
OAS_KEPT = ("v_call", "d_call", "j_call", "productive", "Redundancy", "locus")
MISSING = frozenset({"", "NA", "None", "nan"})
_RESIDUES = frozenset(RESIDUE_ALPHABET)


class AntibodyInput(StrEnum):
    SABDAB = "sabdab"
    OAS = "oas"
    STRUCTURE = "structure"


class AntibodyProblem(ValueError):
    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code


@dataclass(frozen=True)
class AntibodyConfig:
    structures_path: str | None = None  # SAbDab structures: directory or URI prefix; None: the TSV's directory
    contact_cutoff: float = DEFAULT_POCKET_CUTOFF  # Å, heavy atom to heavy atom (the pocket rule)
    storage_options: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.contact_cutoff <= 0:
            raise ValueError(f"antibody: contact_cutoff must be positive, got {self.contact_cutoff}")


def input_kind(uri: str) -> AntibodyInput:
    name = uri.lower()
    if name.endswith(".tsv"):
        return AntibodyInput.SABDAB
    if name.endswith((".csv", ".csv.gz")):
        return AntibodyInput.OAS
    if name.endswith(STRUCTURE_SUFFIXES):
        return AntibodyInput.STRUCTURE
    raise WrongHeader(f"{uri}: not a SAbDab .tsv, an OAS .csv(.gz) or a structure file")


@dataclass
class AntibodySource:
    name: ClassVar[str] = "antibody"
    suffixes: ClassVar[tuple[str, ...]] = (".tsv", ".csv", ".csv.gz", *STRUCTURE_SUFFIXES)
    chunk_items: ClassVar[int] = 64  # ANARCI numbers ~30-60 chains/s per core; structures take ~0.5 s each

    config: AntibodyConfig = field(default_factory=AntibodyConfig)

    def __post_init__(self) -> None:
        self._listings: dict[str, dict[str, str]] = {}  # structures directory -> {lower-case PDB id: path}
        self._entry: tuple[tuple[str, int], Entry] | None = None  # the last (path, model) parsed (rows come grouped)

    # ---- reading
    def read(self, uri: str) -> Iterator[SourceItem | Reject]:
        return guarded(self.name, uri, self._items(uri))

    def _items(self, uri: str) -> Iterator[SourceItem | Reject]:
        kind = input_kind(uri)
        if kind is AntibodyInput.STRUCTURE:
            yield SourceItem(self.name, uri, f"entry {entry_id_from_file_name(uri).upper()}",
                             {"kind": kind, "path": uri})
        elif kind is AntibodyInput.SABDAB:
            yield from self._sabdab_rows(uri)
        else:
            yield from self._oas_rows(uri)

    def _sabdab_rows(self, uri: str) -> Iterator[SourceItem | Reject]:
        directory = (self.config.structures_path or posixpath.dirname(uri)).rstrip("/")
        with open_text(uri, self.config.storage_options) as stream:
            lines = enumerate(stream, start=1)
            header = next((line for _, line in lines if line.strip()), "").rstrip("\r\n").split("\t")
            missing = [c for c in SABDAB_COLUMNS if c not in header]
            if missing:
                raise WrongHeader(f"not a SAbDab summary: no column(s) {missing} in the header")
            for number, line in lines:
                if not line.strip():
                    continue
                row = dict(zip(header, line.rstrip("\r\n").split("\t"), strict=False))
                pdb_id = row["pdb"].strip().lower()
                path = self._structure_path(directory, pdb_id)
                locator = f"line {number} {pdb_id}"
                if path is None:
                    yield Reject(self.name, uri, locator, "read", "structure_missing",
                                 f"{pdb_id}: no structure file in {directory}")
                    continue
                yield SourceItem(self.name, uri, locator, {"kind": AntibodyInput.SABDAB, "row": row, "path": path})

    def _structure_path(self, directory: str, pdb_id: str) -> str | None:
        if directory not in self._listings:
            fs, path = url_to_fs(directory, **(self.config.storage_options or {}))
            found = {}
            try:
                names = fs.ls(path, detail=False)
            except FileNotFoundError:
                names = []
            protocol = directory.split("://")[0] + "://" if "://" in directory else ""
            for name in sorted(names):
                if name.lower().endswith(STRUCTURE_SUFFIXES):
                    key = entry_id_from_file_name(name).lower()
                    found.setdefault(key, name if name.startswith(protocol) else protocol + name)
            self._listings[directory] = found
        return self._listings[directory].get(pdb_id)

    def _oas_rows(self, uri: str) -> Iterator[SourceItem | Reject]:
        with open_text(uri, self.config.storage_options) as stream:
            lines = iter(stream)
            first = next(lines, "")
            try:
                unit = json.loads(first)
            except json.JSONDecodeError as exc:
                raise WrongHeader(f"not an OAS data unit: the first line is not its JSON metadata ({exc})") from exc
            if not isinstance(unit, dict):
                raise WrongHeader("not an OAS data unit: the first line is not a JSON object")
            reader = csv.DictReader(lines)
            columns = reader.fieldnames or []
            paired = all(c in columns for c in OAS_PAIRED)
            if not paired and OAS_UNPAIRED not in columns:
                raise WrongHeader(f"OAS unit without {' and '.join(OAS_PAIRED)} or {OAS_UNPAIRED} columns")
            batch = NumberingBatch()
            for number, row in enumerate(reader, start=1):
                if number % self.chunk_items == 1:  # a batch per engine chunk: its items are pickled together
                    batch = NumberingBatch()
                for column in OAS_PAIRED if paired else (OAS_UNPAIRED,):
                    batch.add(row.get(column))
                yield SourceItem(self.name, uri, f"row {number}", {"kind": AntibodyInput.OAS, "row": row,
                                                                   "paired": paired, "unit": unit, "batch": batch})

    # ---- converting
    def convert(self, item: SourceItem) -> Conversion:
        payload = item.payload
        try:
            if payload["kind"] is AntibodyInput.OAS:
                return Conversion(samples=[self._oas_sample(item)])
            if payload["kind"] is AntibodyInput.SABDAB:
                entry = self._load(payload["path"], _model_index(payload["row"]))
                return SabdabRow(entry, payload["row"], item, self.config.contact_cutoff).run()
            return entry_antibodies(self._load(payload["path"]), item, self.config.contact_cutoff)
        except (AntibodyProblem, NumberingError, StructureError, WrongHeader) as exc:
            return Conversion(rejects=[reject_from(item, "convert", exc)])

    def _load(self, path: str, model_index: int = 0) -> Entry:
        if self._entry is None or self._entry[0] != (path, model_index):
            try:
                text = read_bytes(path, self.config.storage_options).decode("utf-8")
            except (OSError, UnicodeDecodeError) as exc:  # CorruptInput (bad gzip) is an OSError
                raise AntibodyProblem(getattr(exc, "reason_code", "unreadable_structure"), f"{path}: {exc}") from exc
            entry = load_entry(text, fallback_id=entry_id_from_file_name(path), model_index=model_index)
            self._entry = ((path, model_index), entry)
        return self._entry[1]

    def _oas_sample(self, item: SourceItem) -> Sample:
        row, unit = item.payload["row"], item.payload["unit"]
        batch = item.payload.get("batch") or NumberingBatch()
        if item.payload["paired"]:
            heavy_raw, light_raw = (_oas_sequence(row.get(c), c) for c in OAS_PAIRED)
            heavy_domains, light_domains = (batch.domains(heavy_raw), batch.domains(light_raw))
            heavy = v_chain(heavy_raw, _domain_of(heavy_domains, "heavy", OAS_PAIRED[0]), "")
            light = v_chain(light_raw, _domain_of(light_domains, "light", OAS_PAIRED[1]), "")
            metadata = {f"{c}_{side}": row.get(f"{c}_{side}") for c in OAS_KEPT for side in ("heavy", "light")}
        else:
            raw = _oas_sequence(row.get(OAS_UNPAIRED), OAS_UNPAIRED)
            domains = [d for d in batch.domains(raw) if d.is_heavy or d.is_light]
            if not domains:
                raise AntibodyProblem("not_an_antibody", f"{OAS_UNPAIRED}: ANARCI finds no antibody variable domain")
            chain = v_chain(raw, domains[0], "")
            heavy, light = (chain, None) if domains[0].is_heavy else (None, chain)
            metadata = {c: row.get(c) for c in OAS_KEPT}
        antibody = Antibody(heavy, light, source_id=f"{_file_name(item.uri)}:{item.locator}")
        metadata = metadata_without_nones(**{k: v for k, v in metadata.items() if v not in MISSING}) | {
            "oas_unit": unit, **chain_metadata(antibody),
        }
        return antibody_sample(antibody, antibody.source_id or "", metadata)


class NumberingBatch:
    """The sequences of consecutive OAS rows, numbered in one ANARCI run when the first of them is needed.

    Why: one ``anarci`` call per row spends most of its time starting ``hmmscan`` and loading its models
    (``benchmarks/bench_ingest.py``: 0.45x of the batched floor per row, batched here ~0.9x). The reader
    gives the rows of one engine chunk one shared batch (pickled with the chunk, so shared after
    unpickling too); a row still converts, and is accounted for, on its own.
    """

    def __init__(self) -> None:
        self.sequences: dict[str, None] = {}
        self.numbered: dict[str, list[VDomain]] | None = None

    def add(self, value: str | None) -> None:
        sequence = (value or "").strip()
        if sequence and _RESIDUES.issuperset(sequence):
            self.sequences[sequence] = None

    def domains(self, sequence: str) -> list[VDomain]:
        if self.numbered is None:
            batch = list(self.sequences)
            self.numbered = dict(zip(batch, number_sequences(batch), strict=True))
        if sequence not in self.numbered:  # not announced to the batch: numbered alone
            self.numbered[sequence] = number_sequences([sequence])[0]
        return self.numbered[sequence]


def _file_name(uri: str) -> str:
    return posixpath.basename(uri.split("://")[-1])


def _oas_sequence(value: str | None, column: str) -> str:
    sequence = (value or "").strip()
    if not sequence:
        raise AntibodyProblem("empty_sequence", f"{column} is empty")
    if not _RESIDUES.issuperset(sequence):
        bad = "".join(sorted(set(sequence) - _RESIDUES))
        raise AntibodyProblem("non_amino_acid", f"{column} holds {bad!r}, outside the alphabet {RESIDUE_ALPHABET}")
    return sequence


def _domain_of(domains: list[VDomain], side: str, what: str) -> VDomain:
    for domain in domains:
        if domain.is_heavy if side == "heavy" else domain.is_light:
            return domain
    found = ", ".join(d.chain_type for d in domains) or "no variable domain"
    code = "chain_type_mismatch" if domains else "not_an_antibody"
    raise AntibodyProblem(code, f"{what}: ANARCI finds {found}, not a {side} chain")


def v_chain(sequence: str, domain: VDomain, chain_id: str) -> AntibodyChain:
    """The variable domain of ``sequence`` as a grammar chain, CDRs from the numbering."""
    if any(start == end for start, end in domain.cdrs):
        missing = [f"CDR{k}" for k, (start, end) in enumerate(domain.cdrs, 1) if start == end]
        raise AntibodyProblem("incomplete_v_domain", f"chain {chain_id or '-'} ({domain.chain_type}): "
                                                      f"{', '.join(missing)} not in the sequence")
    return AntibodyChain(sequence[domain.start : domain.end], domain.cdrs, chain_type=domain.chain_type,
                         chain_id=chain_id)


def chain_metadata(antibody: Antibody) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for side, chain in (("heavy", antibody.heavy), ("light", antibody.light)):
        if chain is not None:
            metadata[f"{side}_type"] = chain.chain_type
            metadata[f"{side}_cdrs"] = list(chain.cdr_sequences())
    return metadata


def antibody_key(antibody: Antibody) -> str:
    return "/".join(chain.sequence if chain else "" for chain in (antibody.heavy, antibody.light))


def antibody_sample(antibody: Antibody, source_id: str, metadata: dict[str, Any]) -> Sample:
    # split_group stays "": antibodies are clustered by sequence in split (see pipeline.records).
    return Sample("antibody", "antibody", FORMATS["antibody"].write(antibody), source_id,
                  dedup_key("antibody", antibody_key(antibody)), metadata, obj=antibody)


def _chain_ids(value: str | None) -> list[str]:
    return [] if value is None or value.strip() in MISSING else [part.strip() for part in value.split("|")]


def _model_index(row: dict[str, str]) -> int:
    """The row's ``model`` column: SAbDab numbers the models of an entry from 0 in file order (Biopython's
    model ids), so an NMR ensemble's rows each name the model their chains were annotated in. Absent or NA:
    the first model."""
    value = (row.get("model") or "").strip()
    if value in MISSING:
        return 0
    if not value.isdigit():
        raise AntibodyProblem("bad_model", f"model column {value!r} is not a model number")
    return int(value)


class SabdabRow:
    """The samples of one SAbDab row: the antibody, and its interaction with a protein antigen."""

    def __init__(self, entry: Entry, row: dict[str, str], item: SourceItem, cutoff: float) -> None:
        self.entry, self.row, self.item, self.cutoff = entry, row, item, cutoff
        self.index = {chain.chain_id: i for i, chain in enumerate(entry.chains)}

    def _chain(self, chain_id: str, role: str) -> int:
        if chain_id not in self.index:
            present = " ".join(self.index) or "none"
            raise AntibodyProblem("chain_not_in_structure", f"{role} chain {chain_id!r} is not a protein chain of "
                                                            f"{self.entry.entry_id} (protein chains: {present})")
        return self.index[chain_id]

    def run(self) -> Conversion:
        row = self.row
        heavy_id, light_id = (_chain_ids(row.get(c)) for c in ("Hchain", "Lchain"))
        if not heavy_id and not light_id:
            raise AntibodyProblem("no_antibody_chain", "Hchain and Lchain are both NA")
        heavy_index = self._chain(heavy_id[0], "heavy") if heavy_id else None
        light_index = self._chain(light_id[0], "light") if light_id else None
        named = [i for i in dict.fromkeys((heavy_index, light_index)) if i is not None]
        domains = dict(zip(named, number_sequences([self.entry.chains[i].sequence for i in named]), strict=True))
        chains: dict[str, tuple[int, VDomain] | None] = {"heavy": None, "light": None}
        for side, index, code in (("heavy", heavy_index, "not_heavy_chain"), ("light", light_index, "not_light_chain")):
            if index is None:
                continue
            chain_id = self.entry.chains[index].chain_id
            try:
                chains[side] = (index, _domain_of(domains[index], side, f"chain {chain_id}"))
            except AntibodyProblem as exc:
                raise AntibodyProblem(code, str(exc)) from exc
        antibody = self._antibody(chains)
        source_id = f"{self.entry.entry_id}:{'+'.join(heavy_id + light_id)}"
        metadata = entry_metadata(self.entry) | metadata_without_nones(
            heavy_chain=heavy_id[0] if heavy_id else None, light_chain=light_id[0] if light_id else None,
            antigen_chains=_chain_ids(row.get("antigen_chain")) or None,
            antigen_type=row.get("antigen_type") if row.get("antigen_type") not in MISSING else None,
            **{f"sabdab_{k}": row[k] for k in SABDAB_KEPT if row.get(k) not in MISSING and k in row},
        ) | chain_metadata(antibody)
        samples = [antibody_sample(antibody, source_id, dict(metadata))]
        rejects: list[Reject] = []
        antigens = self._protein_antigens()
        if antigens:
            try:
                samples.append(self._interaction(antibody, chains, antigens, source_id, metadata))
            except AntibodyProblem as exc:
                rejects.append(reject_from(self.item, "convert", exc, part="antibody_antigen"))
        return Conversion(samples, rejects)

    def _antibody(self, chains: dict[str, tuple[int, VDomain] | None]) -> Antibody:
        built = {
            side: v_chain(self.entry.chains[found[0]].sequence, found[1], self.entry.chains[found[0]].chain_id)
            for side, found in chains.items() if found is not None
        }
        return Antibody(built.get("heavy"), built.get("light"), source_id=self.entry.entry_id)

    def _protein_antigens(self) -> list[str]:
        ids = _chain_ids(self.row.get("antigen_chain"))
        types = _chain_ids(self.row.get("antigen_type"))
        types = types if len(types) == len(ids) else [types[0] if types else ""] * len(ids)
        return [chain for chain, kind in zip(ids, types, strict=True) if kind.lower() in PROTEIN_ANTIGENS]

    def _interaction(self, antibody: Antibody, chains: dict[str, tuple[int, VDomain] | None], antigen_ids: list[str],
                     source_id: str, metadata: dict[str, Any]) -> Sample:
        antigen_indices = [self._chain(chain_id, "antigen") for chain_id in antigen_ids]
        antibody_indices = [found[0] for found in chains.values() if found is not None]
        pair, contacts = interaction(self.entry, antibody, chains, antibody_indices, antigen_indices, self.cutoff)
        return interaction_sample(pair, source_id, metadata | contacts)


def interaction(entry: Entry, antibody: Antibody, chains: dict[str, tuple[int, VDomain] | None],
                antibody_indices: list[int], antigen_indices: list[int], cutoff: float) -> tuple[AntibodyAntigen, dict]:
    """Paratope and epitope by the contact rule (module docstring); the pair and its residue-id metadata."""
    atom_chain = entry.residue_chain[entry.atom_residue]
    on_antibody = np.flatnonzero(np.isin(atom_chain, antibody_indices))
    on_antigen = np.flatnonzero(np.isin(atom_chain, antigen_indices))
    if not len(on_antibody) or not len(on_antigen):
        raise AntibodyProblem("no_epitope", "no modelled heavy atoms on the antibody or the antigen chains")
    hits = cKDTree(entry.atom_positions[on_antigen]).query_ball_point(entry.atom_positions[on_antibody], r=cutoff)
    touching = np.fromiter((bool(h) for h in hits), dtype=bool, count=len(hits))
    if not touching.any():
        raise AntibodyProblem("no_epitope", f"no antigen heavy atom within {cutoff} Å of the antibody")
    paratope_rows = _ordered_residues(entry, entry.atom_residue[on_antibody[touching]])
    epitope_atoms = np.unique(np.concatenate([np.asarray(h, dtype=np.int64) for h in hits if h]))
    epitope_rows = _ordered_residues(entry, entry.atom_residue[on_antigen[epitope_atoms]])
    marks: dict[str, list[int]] = {"heavy": [], "light": []}
    outside = 0
    for row in paratope_rows:
        chain, position = int(entry.residue_chain[row]), int(entry.residue_position[row])
        placed = False
        for side, found in chains.items():
            if found is not None and found[0] == chain and found[1].start <= position < found[1].end:
                marks[side].append(position - found[1].start)
                placed = True
                break
        outside += not placed
    if not any(marks.values()):
        raise AntibodyProblem("no_epitope", "the antigen touches only the constant domains")

    def marked(chain: AntibodyChain | None, side: str) -> AntibodyChain | None:
        if chain is None:
            return None
        return AntibodyChain(chain.sequence, chain.cdrs, tuple(sorted(set(marks[side]))), chain.chain_type,
                             chain.chain_id)

    epitope_chains = list(dict.fromkeys(int(entry.residue_chain[r]) for r in epitope_rows))
    local = {chain: i for i, chain in enumerate(epitope_chains)}
    antigen = Protein(tuple(Chain(entry.chains[c].sequence, chain_id=entry.chains[c].chain_id) for c in epitope_chains),
                      source_id=entry.entry_id)
    epitope = Pocket(tuple((local[int(entry.residue_chain[r])], int(entry.residue_position[r])) for r in epitope_rows),
                     cutoff=cutoff, residue_ids=tuple(entry.residue_ids[r] for r in epitope_rows))
    pair = AntibodyAntigen(
        Antibody(marked(antibody.heavy, "heavy"), marked(antibody.light, "light"), antibody.source_id),
        BindingSite(antigen, epitope),
    )
    contacts = {
        "contact_cutoff": cutoff,
        "epitope_chain_ids": [entry.chains[c].chain_id for c in epitope_chains],
        "epitope_residue_ids": list(epitope.residue_ids),
        "paratope_residue_ids": [entry.residue_ids[r] for r in paratope_rows],
        "paratope_outside_v_domain": outside,
    }
    return pair, contacts


def _ordered_residues(entry: Entry, rows: np.ndarray) -> np.ndarray:
    rows = np.unique(rows)
    return rows[np.lexsort((entry.residue_position[rows], entry.residue_chain[rows]))]


def interaction_sample(pair: AntibodyAntigen, source_id: str, metadata: dict[str, Any]) -> Sample:
    antigen = "/".join(chain.sequence for chain in pair.antigen.protein.chains)
    paratope = ";".join(",".join(map(str, c.paratope)) if c else "" for c in (pair.antibody.heavy, pair.antibody.light))
    epitope = ",".join(f"{c}:{i}" for c, i in pair.antigen.pocket.residues)
    key = "|".join((antibody_key(pair.antibody), antigen, paratope, epitope))
    return Sample("antibody", "antibody_antigen", FORMATS["antibody_antigen"].write(pair), source_id,
                  dedup_key("antibody", f"antibody_antigen|{key}"), metadata, obj=pair)


def entry_antibodies(entry: Entry, item: SourceItem, cutoff: float) -> Conversion:
    """Every antibody of a PDB entry found by numbering its protein chains (module docstring: pairing)."""
    numbered = number_sequences([chain.sequence for chain in entry.chains])
    heavy = [(i, d) for i, domains in enumerate(numbered) for d in domains if d.is_heavy]
    light = [(i, d) for i, domains in enumerate(numbered) for d in domains if d.is_light]
    if not heavy and not light:
        raise AntibodyProblem("not_an_antibody", f"{entry.entry_id}: ANARCI finds no antibody variable domain")
    pairs = _pair_domains(entry, heavy, light, cutoff)
    antigen_candidates = [i for i, domains in enumerate(numbered) if not any(d.is_heavy or d.is_light for d in domains)]
    samples: dict[str, Sample] = {}
    rejects: list[Reject] = []
    for pair in pairs:
        chain_ids = [entry.chains[i].chain_id for i, _ in pair if i is not None]
        source_id = f"{entry.entry_id}:{'+'.join(chain_ids)}"
        try:
            built = [v_chain(entry.chains[i].sequence, d, entry.chains[i].chain_id) if i is not None else None
                     for i, d in pair]
        except AntibodyProblem as exc:
            rejects.append(reject_from(item, "convert", exc, part="+".join(chain_ids)))
            continue
        antibody = Antibody(built[0], built[1], source_id=entry.entry_id)
        metadata = entry_metadata(entry) | {"chain_ids": chain_ids} | chain_metadata(antibody)
        found = [antibody_sample(antibody, source_id, dict(metadata))]
        try:  # the antigen: chains without an antibody domain (T-cell receptors included) that touch this one
            sides = dict(zip(("heavy", "light"), (None if i is None else (i, d) for i, d in pair), strict=True))
            contact, contacts = interaction(entry, antibody, sides, [i for i, _ in pair if i is not None],
                                            antigen_candidates, cutoff)
            found.append(interaction_sample(contact, source_id, metadata | contacts))
        except AntibodyProblem:  # no antigen in the entry, or none touches the variable domains: no pair sample
            pass
        for sample in found:
            sample.metadata["copies"] = ["+".join(chain_ids)]
            key = f"{sample.task}|{sample.dedup_key}"
            if key in samples:
                samples[key].metadata["copies"].append("+".join(chain_ids))
            else:
                samples[key] = sample
    return Conversion(list(samples.values()), rejects)


def _pair_domains(entry: Entry, heavy: list[tuple[int, VDomain]], light: list[tuple[int, VDomain]],
                  cutoff: float) -> list[tuple[tuple[int | None, VDomain | None], ...]]:
    """Heavy/light pairs by V-domain contact (an scFv chain pairs with itself); unpaired domains alone."""
    def atoms(index: int, domain: VDomain) -> np.ndarray:
        rows = np.flatnonzero((entry.residue_chain == index) & (entry.residue_position >= domain.start)
                              & (entry.residue_position < domain.end))
        return entry.atom_positions[np.isin(entry.atom_residue, rows)]

    scores = []
    for h, (hi, hd) in enumerate(heavy):
        heavy_atoms = atoms(hi, hd)
        tree = cKDTree(heavy_atoms) if len(heavy_atoms) else None
        for k, (li, ld) in enumerate(light):
            light_atoms = atoms(li, ld)
            score = int(tree.query_ball_point(light_atoms, r=cutoff, return_length=True).sum()) \
                if tree is not None and len(light_atoms) else 0
            scores.append((-(hi == li), -score, h, k))
    used_heavy: set[int] = set()
    used_light: set[int] = set()
    pairs: list[tuple[tuple[int | None, VDomain | None], ...]] = []
    for same_chain, negative_score, h, k in sorted(scores):
        if h in used_heavy or k in used_light or (not same_chain and not negative_score):
            continue
        used_heavy.add(h)
        used_light.add(k)
        pairs.append((heavy[h], light[k]))
    pairs += [(heavy[h], (None, None)) for h in range(len(heavy)) if h not in used_heavy]
    pairs += [((None, None), light[k]) for k in range(len(light)) if k not in used_light]
    order = {id(p): min(i for i, _ in p if i is not None) for p in pairs}
    return sorted(pairs, key=lambda p: order[id(p)])
