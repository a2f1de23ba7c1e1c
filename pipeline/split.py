"""Train/valid/test splits without leakage: whole groups go to one split, chosen by a stable hash.

Groups (``group_keys``):
- molecules: Bemis–Murcko scaffold (RDKit); acyclic molecules have no scaffold and are their own
  group (their exact-dedup key);
- proteins, pockets, complexes, antibodies: sequence-identity clusters of their chains (an antibody–antigen
  record's chains are the antibody's and the antigen's); a record whose chains
  fall in several clusters joins them into one group, so a complex always goes with its protein's
  cluster. Clusters come from MMseqs2 ``easy-cluster`` (default 30% identity, 0.8 coverage) when
  the ``mmseqs`` binary is on PATH. Fallback without it: MinHash LSH over residue 3-mers at
  Jaccard >= 0.5, then connected components. That joins sequences above roughly 85-90% identity
  (J ~ p^3 / (2 - p^3) at identity p) and misses remote homologs MMseqs2 would join: it stops
  near-identical leakage (mutants, tags, orthologs from close species), not 30%-identity leakage;
- reactions: canonical product(s) — ``react`` and ``reverse_react`` views of one reaction stay
  together; an optional time split puts whole product groups by their earliest year;
- crystals: (reduced formula, space group), the dedup group key; anything else: its dedup key.

Where the groups come from: the ``split_group`` column the sources write at ingest (``pipeline.groups``,
from the object they parsed; no text is parsed here for those rows), and for the records clustered by
sequence their ``chain_sequences`` column, or for a plain protein record the chains split off its text
(``group_sources``). Rows with neither (shards written before the columns existed, or hand-made rows) get
the same keys from their text (``record_group``), so the result is identical.

A group goes to train when ``sha256(salt + group) / 2**60 < train``, to valid below train + valid,
else to test: the same group lands in the same split on every run and machine, and adding data
never moves an existing group. Decontamination: records whose group holds an excluded item are
removed from train (not from valid/test) and returned separately. Accepted exclusion entries, one
per line: a dedup key as in the records (``molecule:<hash>``, ``material:TiO2:136``),
grammar text (``<MoleculeS>…``, ``<ProteinS>…``), a reaction SMILES (``reactants>reagents>products``,
atom maps allowed), or a molecule SMILES. Lines starting with ``#`` are comments.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from grammar.errors import GrammarError
from grammar.formats import FORMATS, parse_any
from grammar.molecule import Molecule, mol_from_smiles
from grammar.protein import RESIDUE_ALPHABET
from grammar.reaction import Reaction
from grammar.tags import PROTEIN_E, PROTEIN_S
from pipeline.dedup import as_frame
from pipeline.groups import key_group, molecule_group, product_group
from pipeline.near_dedup import NearDedupConfig, clusters, similar_pairs

SPLITS = ("train", "valid", "test")
PROTEIN_DOMAINS = ("protein", "pocket", "complex", "antibody")
# A plain protein record's whole text: one or more chains of residues (grammar.protein.write_protein).
PLAIN_PROTEIN_TEXT = f"^(?:{re.escape(PROTEIN_S)}[{RESIDUE_ALPHABET}]+{re.escape(PROTEIN_E)})+$"
DEDUP_KEY_LINE = re.compile(r"^(molecule|protein|pocket|complex|reaction|material|antibody|mof):\S+$")


class SplitError(ValueError):
    """A record (or exclusion entry) whose group cannot be derived, with which one and why."""


@dataclass(frozen=True)
class ProteinClusterConfig:
    method: str = "auto"  # "auto": mmseqs when the binary is on PATH, else "minhash"
    min_seq_id: float = 0.3  # MMseqs2 --min-seq-id
    coverage: float = 0.8  # MMseqs2 -c
    threads: int = 2
    minhash_kmer: int = 3
    minhash_threshold: float = 0.5


@dataclass(frozen=True)
class TimeSplit:
    valid_from: int  # first year that goes to valid
    test_from: int  # first year that goes to test
    field: str = "year"  # metadata field
    domains: tuple[str, ...] = ("reaction",)  # records elsewhere, or without the field, use the hash


@dataclass(frozen=True)
class SplitConfig:
    fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)  # train, valid, test
    salt: str = "logos-split/1"
    proteins: ProteinClusterConfig = field(default_factory=ProteinClusterConfig)
    time_split: TimeSplit | None = None
    use_ray: bool = False  # group keys per block on Ray Data (same result)
    batch_rows: int = 4096

    def __post_init__(self) -> None:
        if len(self.fractions) != 3 or min(self.fractions) < 0 or abs(sum(self.fractions) - 1.0) > 1e-9:
            raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {self.fractions}")


@dataclass
class SplitResult:
    records: pl.DataFrame  # input columns + "group" + "split"
    excluded: pl.DataFrame  # train records removed by decontamination (same columns)
    protein_method: str  # "mmseqs" | "minhash" | "none"


def resolved_method(config: SplitConfig) -> SplitConfig:
    """``config`` with protein clustering "auto" replaced by the method that will run here."""
    if config.proteins.method != "auto":
        return config
    method = "mmseqs" if shutil.which("mmseqs") else "minhash"
    return replace(config, proteins=replace(config.proteins, method=method))


def hash_split(group: str, config: SplitConfig) -> str:
    value = int(hashlib.sha256(f"{config.salt}\x00{group}".encode()).hexdigest()[:15], 16) / 16**15
    train, valid, _ = config.fractions
    return "train" if value < train else "valid" if value < train + valid else "test"


def scaffold_group(smiles: str, fallback: str) -> str:
    return molecule_group(mol_from_smiles(smiles), fallback)


def chains_of(parsed: Any) -> list[str]:
    """Chain sequences of a Protein, BindingSite or Complex (through ``.protein``), an Antibody or an
    AntibodyAntigen (their ``.chains``)."""
    protein = getattr(parsed, "protein", parsed)
    return [chain.sequence for chain in protein.chains]


def record_group(task: str, text: str, fallback: str) -> str | list[str]:
    """A record's group key, or its chain sequences when the group comes from protein clusters."""
    fmt = FORMATS[task]
    if fmt.domain == "molecule":
        return scaffold_group(fmt.parse(text).smiles, fallback)
    if fmt.domain == "reaction":
        return product_group(fmt.parse(text))
    if fmt.domain in PROTEIN_DOMAINS:
        return chains_of(fmt.parse(text))
    return key_group(fallback)


def exclusion_group(line: str) -> str | list[str]:
    """The group of one exclusion entry (see the module docstring for the accepted forms)."""
    if DEDUP_KEY_LINE.match(line):
        return f"dedup-key:{line}"
    if line.startswith("<"):
        task, _ = parse_any(line)
        return record_group(task, line, line)
    if ">" in line:
        return product_group(Reaction.from_reaction_smiles(line))
    molecule = Molecule.from_smiles(line)
    return scaffold_group(molecule.smiles, f"smiles:{molecule.smiles}")


def read_exclusions(lines: Iterable[str]) -> list[str]:
    """Entries of an exclusion file: stripped lines, without blanks and ``#`` comment lines ('#' is also a
    SMILES triple bond, so only a line that starts with it is a comment)."""
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


def assign_splits(config: SplitConfig, records: pl.DataFrame | pa.Table, exclude: Sequence[str] = ()) -> SplitResult:
    frame = as_frame(records)
    fixed, chain_rows, chain_lists, text_rows = group_sources(frame)
    fallback = pl.when(pl.col("dedup_key") == "").then(pl.col("content_id")).otherwise(pl.col("dedup_key"))
    columns = frame[text_rows].select("content_id", "source", "source_id", "task", "text", fallback=fallback)
    if columns.height:
        arrow = columns.to_arrow()
        raw = ray_record_groups(arrow, config.batch_rows) if config.use_ray else record_groups(arrow)
    else:
        raw = []
    raw += chain_lists
    excluded_raw = []
    for n, line in enumerate(exclude, 1):
        try:
            excluded_raw.append(exclusion_group(line))
        except GrammarError as exc:
            raise SplitError(f"exclusion entry {n} {line[:80]!r}: {exc}") from exc
    groups, method = resolve_protein_groups(raw + excluded_raw, config.proteins)
    derived, excluded_groups = groups[: len(raw)], set(groups[len(raw) :])
    excluded_keys = {g.removeprefix("dedup-key:") for g in excluded_groups if g.startswith("dedup-key:")}
    positions = pl.Series(np.concatenate([text_rows, chain_rows]), dtype=pl.UInt32)
    group = fixed.scatter(positions, pl.Series(derived, dtype=pl.String)) if len(positions) else fixed
    frame = frame.with_columns(group=group)
    excluded_groups |= set(frame.filter(pl.col("dedup_key").is_in(list(excluded_keys)))["group"].to_list())
    frame = frame.with_columns(split=choose_splits(frame, config))
    removed = pl.col("group").is_in(list(excluded_groups)) & (pl.col("split") == "train")
    return SplitResult(frame.filter(~removed), frame.filter(removed), method)


def group_sources(frame: pl.DataFrame) -> tuple[pl.Series, np.ndarray, list[list[str]], np.ndarray]:
    """Where each row's group comes from, without parsing text with the grammar:

    - the ``split_group`` column (returned as a copy, "" where unset);
    - chains to cluster (rows, and their chain lists): a pocket's, complex's or antibody's from the
      ``chain_sequences`` column; a plain ``protein`` record's from its text by a vectorized split on the
      chain tags, after the same check the grammar makes (one or more ``<ProteinS>`` + residues of the
      alphabet + ``<ProteinE>``), since its text is nothing but its chains and storing them again would
      double the bytes of the largest domain (+49% on UniProt shards);
    - the rows left, whose text ``record_group`` parses (shards written before the columns existed).
    """
    height = frame.height
    fixed = frame["split_group"].fill_null("") if "split_group" in frame.columns else pl.repeat("", height, eager=True)
    fixed = fixed.cast(pl.String).alias("group").clone()
    unset = (fixed == "").to_numpy()
    from_column = np.zeros(height, dtype=bool)
    if "chain_sequences" in frame.columns:
        from_column = frame.select(
            pl.col("domain").is_in(PROTEIN_DOMAINS) & (pl.col("chain_sequences").list.len().fill_null(0) > 0)
        ).to_series().to_numpy()
    plain_protein = frame.select(
        (pl.col("task") == "protein") & pl.col("text").str.contains(PLAIN_PROTEIN_TEXT)
    ).to_series().to_numpy() & ~from_column
    column_rows, text_split_rows = np.flatnonzero(unset & from_column), np.flatnonzero(unset & plain_protein)
    chain_lists = frame["chain_sequences"][column_rows].to_list() if len(column_rows) else []
    if len(text_split_rows):
        inner = frame["text"][text_split_rows].str.strip_prefix(PROTEIN_S).str.strip_suffix(PROTEIN_E)
        chain_lists += inner.str.split(PROTEIN_E + PROTEIN_S).to_list()
    chain_rows = np.concatenate([column_rows, text_split_rows])
    return fixed, chain_rows, chain_lists, np.flatnonzero(unset & ~from_column & ~plain_protein)


def record_groups(columns: pa.Table) -> list[str | list[str]]:
    """``record_group`` of each row of (content_id, source, source_id, task, text, fallback)."""
    raw: list[str | list[str]] = []
    for content_id, source, source_id, task, text, key in zip(*columns.to_pydict().values(), strict=True):
        try:
            raw.append(record_group(task, text, key))
        except (GrammarError, KeyError) as exc:
            raise SplitError(f"record {content_id} ({source} {source_id}, task {task!r}): {exc}") from exc
    return raw


def _group_batch(batch: pa.Table) -> dict[str, list]:
    raw = record_groups(batch)
    return {"group": [r if isinstance(r, str) else None for r in raw],
            "chains": [r if isinstance(r, list) else None for r in raw]}


def ray_record_groups(columns: pa.Table, batch_rows: int) -> list[str | list[str]]:
    """``record_groups`` per block on Ray Data (RDKit and grammar parsing dominate), order kept."""
    import ray

    ray.data.DataContext.get_current().execution_options.preserve_order = True
    dataset = ray.data.from_arrow(columns).map_batches(_group_batch, batch_format="pyarrow", batch_size=batch_rows)
    raw: list[str | list[str]] = []
    for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
        pairs = zip(batch["group"].to_pylist(), batch["chains"].to_pylist(), strict=True)
        raw.extend(group if group is not None else chains for group, chains in pairs)
    return raw


def resolve_protein_groups(raw: list[str | list[str]], config: ProteinClusterConfig) -> tuple[list[str], str]:
    """Replace chain lists by the key of their cluster (chains in several clusters join them)."""
    chain_lists = [r for r in raw if isinstance(r, list)]
    if not chain_lists:
        return [r for r in raw if isinstance(r, str)], "none"
    group_of_record, method = cluster_sequences(chain_lists, config)
    groups = iter(group_of_record)
    return [r if isinstance(r, str) else next(groups) for r in raw], method


def choose_splits(frame: pl.DataFrame, config: SplitConfig) -> pl.Series:
    """Each row's split: its group's hash split, or the time split's year rule; one hash per group."""
    unique = frame["group"].unique()
    by_group = {g: hash_split(g, config) for g in unique.to_list()}
    time_split = config.time_split
    if time_split is not None:
        year = pl.col("metadata").str.json_path_match(f"$.{time_split.field}").cast(pl.Int64, strict=False)
        years = frame.select("group", year=pl.when(pl.col("domain").is_in(time_split.domains)).then(year))
        first_year = years.drop_nulls("year").group_by("group").agg(pl.col("year").min())
        for group, year in first_year.iter_rows():
            by_group[group] = SPLITS[(year >= time_split.valid_from) + (year >= time_split.test_from)]
    splits = pl.Series([by_group[g] for g in unique.to_list()], dtype=pl.String)
    return frame["group"].replace_strict(unique, splits, return_dtype=pl.String).alias("split")


# --- Protein clusters ------------------------------------------------------------------------------
def cluster_sequences(chain_lists: list[list[str]], config: ProteinClusterConfig) -> tuple[list[str], str]:
    """One group key per chain list: the cluster of its chains, clusters shared by a list joined."""
    unique = sorted({s for chains in chain_lists for s in chains})
    method = config.method if config.method != "auto" else "mmseqs" if shutil.which("mmseqs") else "minhash"
    labels = mmseqs_clusters(unique, config) if method == "mmseqs" else minhash_clusters(unique, config)
    index = {sequence: i for i, sequence in enumerate(unique)}
    src = [labels[index[chains[0]]] for chains in chain_lists for _ in chains[1:]]
    dst = [labels[index[c]] for chains in chain_lists for c in chains[1:]]
    joined = clusters(int(labels.max()) + 1, np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64))
    component = joined[labels]
    # Name a group by its lexicographically first sequence: stable however clusters are numbered.
    first = np.full(int(component.max()) + 1, len(unique))
    np.minimum.at(first, component, np.arange(len(unique)))
    names = [f"protein-cluster:{hashlib.sha256(unique[i].encode()).hexdigest()[:20]}" for i in first]
    return [names[component[index[chains[0]]]] for chains in chain_lists], method


def mmseqs_clusters(sequences: list[str], config: ProteinClusterConfig) -> np.ndarray:
    """Cluster label per sequence from ``mmseqs easy-cluster`` (sequences it leaves out are singletons)."""
    with tempfile.TemporaryDirectory(prefix="logos-mmseqs-") as work:
        fasta = Path(work) / "in.fasta"
        fasta.write_text("".join(f">{i}\n{s}\n" for i, s in enumerate(sequences)))
        command = [
            "mmseqs", "easy-cluster", str(fasta), f"{work}/out", f"{work}/tmp",
            "--min-seq-id", str(config.min_seq_id), "-c", str(config.coverage),
            "--threads", str(config.threads), "-v", "1",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"mmseqs easy-cluster failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        labels = np.arange(len(sequences))
        for line in Path(f"{work}/out_cluster.tsv").read_text().splitlines():
            representative, member = line.split("\t")
            labels[int(member)] = int(representative)
    return np.unique(labels, return_inverse=True)[1]


def minhash_clusters(sequences: list[str], config: ProteinClusterConfig) -> np.ndarray:
    residues = pa.chunked_array([pa.array([list(s.encode()) for s in sequences], pa.list_(pa.int32()))])
    near = NearDedupConfig(threshold=config.minhash_threshold, bands=32, shingle=config.minhash_kmer)
    candidates, _, src, dst = similar_pairs(residues, np.zeros(len(sequences), dtype=np.uint32), near)
    return clusters(len(sequences), candidates[src], candidates[dst])
