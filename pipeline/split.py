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

Partitions decide alone (``partition_groups``: group keys, hash splits, per-group first years); what needs
every partition (protein clusters, the time split's first years, the exclusions) is merged once
(``merge_globals``, small: per group or per protein chain) and applied per partition (``decided_partition``).
Two entry points share that logic: ``assign_splits`` (records in memory) and ``split_files`` (a stored
records table: each Ray task reads its own partition's columns from the files and writes its assignments file,
so the driver never holds a record).

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
from typing import Any, Literal

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
from pipeline.partitions import Partition, Storage, read_partition

SPLITS = ("train", "valid", "test")
PROTEIN_DOMAINS = ("protein", "pocket", "complex", "antibody")
# A plain protein record's whole text: one or more chains of residues (grammar.protein.write_protein).
PLAIN_PROTEIN_TEXT = f"^(?:{re.escape(PROTEIN_S)}[{RESIDUE_ALPHABET}]+{re.escape(PROTEIN_E)})+$"
DEDUP_KEY_LINE = re.compile(r"^(molecule|protein|pocket|complex|reaction|material|antibody|mof):\S+$")


class SplitError(ValueError):
    """A record (or exclusion entry) whose group cannot be derived, with which one and why."""


@dataclass(frozen=True)
class ProteinClusterConfig:
    method: Literal["auto", "mmseqs", "minhash"] = "auto"  # "auto": mmseqs when the binary is on PATH, else "minhash"
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
    workers: int | None = None  # Ray tasks deciding partitions' groups and splits (None: in process; same result)
    # Records per partition (one task each; a stored dataset's partitions are row ranges of its files); the
    # same splits whatever it is.
    partition_rows: int = field(default=250_000, metadata={"execution": True})

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


def assign_splits(
    config: SplitConfig, records: pl.DataFrame | pa.Table, exclude: Sequence[str] = (), workers: int | None = None,
    partition_rows: int = 250_000,
) -> SplitResult:
    """Each record's group and split, and the train records decontamination removes, for records in memory
    (``split_files`` is the same over files, each task reading its own partition).

    Partitions of ``partition_rows`` consecutive rows are handled independently (``partition_groups``:
    group keys from the columns or the text, each group's hash split, each group's first year for the time
    split), in this process (``workers=None``) or as plain Ray tasks (``workers=N`` CPUs); a split depends
    on the group key alone, so partitions need no exchange. What needs every partition is merged here
    (``merge_globals``): protein clusters (MMseqs2 or MinHash over the distinct chains, one node), the time
    split's first year per group (a min over the partitions' per-group minima) and the exclusions; each
    partition then applies them (``decided_partition``). Plain tasks rather than Ray Data: each partition is
    one call returning a few columns, merged in order; nothing to pipeline.
    """
    frame = as_frame(records)
    excluded_raw = exclusion_groups(exclude)
    keys = excluded_keys(excluded_raw)
    parts = list(frame.iter_slices(partition_rows))
    groups = list(computed_groups(config, frame, workers, partition_rows))
    decisions = merge_globals(config, [globals_of(p, g, keys) for p, g in zip(parts, groups, strict=True)],
                              excluded_raw)
    kept, removed = [], []
    for part, part_groups, chain_groups in zip(parts, groups, decisions.chain_groups, strict=True):
        decided = decided_partition(config, part, part_groups, chain_groups, decisions)
        kept.append(decided[0])
        removed.append(decided[1])
    if not parts:
        empty = frame.with_columns(group=pl.lit(None, pl.String), split=pl.lit(None, pl.String))
        return SplitResult(empty, empty, decisions.method)
    return SplitResult(pl.concat(kept), pl.concat(removed), decisions.method)


def exclusion_groups(exclude: Sequence[str]) -> list[str | list[str]]:
    """Each exclusion entry's group (or chains, to cluster with the records'), or one error naming it."""
    excluded_raw = []
    for n, line in enumerate(exclude, 1):
        try:
            excluded_raw.append(exclusion_group(line))
        except GrammarError as exc:
            raise SplitError(f"exclusion entry {n} {line[:80]!r}: {exc}") from exc
    return excluded_raw


def excluded_keys(excluded_raw: Sequence[str | list[str]]) -> frozenset[str]:
    """The dedup keys the exclusion entries name (a record with one of them takes its group out of train)."""
    return frozenset(g.removeprefix("dedup-key:") for g in excluded_raw
                     if isinstance(g, str) and g.startswith("dedup-key:"))


@dataclass
class PartitionGlobals:
    """What one partition contributes to the decisions that need every partition (``merge_globals``)."""

    chain_lists: list[list[str]]  # chains of the rows whose group is a protein cluster, in chain_rows order
    chain_years: pl.Series  # their years (time split), else null
    first_years: pl.DataFrame  # (group, year): each keyed group's first year in the time split's domains
    hit_groups: list[str]  # keyed groups of rows whose dedup key is excluded
    hit_chains: list[int]  # positions (in chain_lists) of chain rows whose dedup key is excluded


@dataclass
class GlobalDecisions:
    """What the partitions need from each other, merged once (small: per group or per protein row)."""

    chain_groups: list[list[str]]  # per partition: the cluster group of each of its chain rows
    first_years: pl.DataFrame | None  # (group, year): every group's first year (time split), else None
    excluded_groups: frozenset[str]  # groups whose train records decontamination removes
    method: str  # protein clustering that ran: "mmseqs" | "minhash" | "none"


def globals_of(part: pl.DataFrame, groups: PartitionGroups, keys: frozenset[str]) -> PartitionGlobals:
    hit = part["dedup_key"].is_in(list(keys)).to_numpy() if keys else np.zeros(part.height, dtype=bool)
    chained = np.zeros(part.height, dtype=bool)
    chained[groups.chain_rows] = True
    hit_groups = groups.group.filter(pl.Series(hit & ~chained)).unique().sort().to_list()
    hit_chains = np.flatnonzero(hit[groups.chain_rows]).tolist() if len(groups.chain_rows) else []
    return PartitionGlobals(groups.chain_lists, groups.chain_years, groups.first_years, hit_groups, hit_chains)


def merge_globals(config: SplitConfig, parts: Sequence[PartitionGlobals],
                  excluded_raw: Sequence[str | list[str]]) -> GlobalDecisions:
    """Protein clusters over every partition's chains (and the exclusions'), each group's first year, and the
    groups the exclusions take out of train."""
    chain_lists = [chains for p in parts for chains in p.chain_lists]
    groups, method = resolve_protein_groups(chain_lists + list(excluded_raw), config.proteins)
    derived, excluded = groups[: len(chain_lists)], set(groups[len(chain_lists) :])
    offsets = np.cumsum([0] + [len(p.chain_lists) for p in parts])
    chain_groups = [derived[offsets[i] : offsets[i + 1]] for i in range(len(parts))]
    for part, part_chain_groups in zip(parts, chain_groups, strict=True):
        excluded.update(part.hit_groups)
        excluded.update(part_chain_groups[i] for i in part.hit_chains)
    first_years = None
    if config.time_split is not None:
        chain_years = pl.concat([p.chain_years for p in parts]) if parts else pl.Series("year", [], pl.Int64)
        cluster_years = pl.DataFrame({"group": pl.Series(derived, dtype=pl.String), "year": chain_years})
        years = pl.concat([*(p.first_years for p in parts), cluster_years.drop_nulls("year")])
        first_years = years.group_by("group").agg(pl.col("year").min()).sort("group")
    return GlobalDecisions(chain_groups, first_years, frozenset(excluded), method)


def decided_partition(config: SplitConfig, part: pl.DataFrame, groups: PartitionGroups, chain_groups: list[str],
                      decisions: GlobalDecisions) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The partition's rows with their ``group`` and ``split``: (kept, removed by decontamination)."""
    group, split = groups.group, groups.split
    if len(groups.chain_rows):
        positions = pl.Series(groups.chain_rows, dtype=pl.UInt32)
        group = group.scatter(positions, pl.Series(chain_groups, dtype=pl.String))
        split = split.scatter(positions, pl.Series([hash_split(g, config) for g in chain_groups], dtype=pl.String))
    frame = part.with_columns(group=group.alias("group"), split=split.alias("split"))
    if config.time_split is not None and decisions.first_years is not None:
        frame = with_time_split(frame, decisions.first_years, config.time_split)
    removed = pl.col("group").is_in(pl.Series(sorted(decisions.excluded_groups), dtype=pl.String)) & (
        pl.col("split") == "train")
    return frame.filter(~removed), frame.filter(removed)


@dataclass
class PartitionGroups:
    """What one partition decides alone (``partition_groups``)."""

    group: pl.Series  # each row's group key; "" where it comes from protein clusters
    split: pl.Series  # the group's hash split; null where the group is a protein cluster's
    chain_rows: np.ndarray  # rows (in the partition) whose group is the cluster of their chains
    chain_lists: list[list[str]]  # their chains, in chain_rows order
    first_years: pl.DataFrame  # (group, year): a keyed group's first year in the time split's domains
    chain_years: pl.Series  # the year of each chain row (in the time split's domains), else null


def with_time_split(frame: pl.DataFrame, first_years: pl.DataFrame, time_split: TimeSplit) -> pl.DataFrame:
    """A group with a first year (in the time split's domains) goes by it: valid from ``valid_from``, test
    from ``test_from``; the others keep their hash split."""
    index = (pl.col("year") >= time_split.valid_from).cast(pl.Int32) + (pl.col("year") >= time_split.test_from).cast(
        pl.Int32)
    by_year = first_years.select("group", by_year=index.replace_strict([0, 1, 2], list(SPLITS), return_dtype=pl.String))
    joined = frame.join(by_year, on="group", how="left", maintain_order="left")
    return joined.with_columns(split=pl.coalesce("by_year", "split")).drop("by_year")


def partition_columns(frame: pl.DataFrame, config: SplitConfig) -> pl.DataFrame:
    """The columns a partition reads; text only where no ``split_group`` was written at ingest."""
    names = ["content_id", "source", "source_id", "task", "domain", "dedup_key", "text"]
    names += [c for c in ("split_group", "chain_sequences") if c in frame.columns]
    if config.time_split is not None:
        names.append("metadata")
    unset = pl.col("split_group").fill_null("") == "" if "split_group" in frame.columns else pl.lit(True)
    return frame.select(names).with_columns(text=pl.when(unset).then(pl.col("text")).otherwise(pl.lit("")))


def computed_groups(
    config: SplitConfig, frame: pl.DataFrame, workers: int | None, partition_rows: int
) -> Iterable[PartitionGroups]:
    columns = partition_columns(frame, config)
    parts = columns.iter_slices(partition_rows)
    if workers is None:
        yield from (partition_groups(config, part) for part in parts)
        return
    from pipeline.partition_tasks import ordered_results
    from pipeline.ray_runtime import ray_session

    task_config = replace(config, use_ray=False)  # inside a task: its own rows, in its own process
    with ray_session(num_cpus=workers):
        yield from list(ordered_results("split", partition_groups, ((task_config, part) for part in parts)))


# --- over files: each task reads its own partition -----------------------------------------------------------
SPLIT_READ_COLUMNS = ("content_id", "source", "source_id", "task", "domain", "dedup_key", "n_tokens")
ASSIGNMENT_COLUMNS = ("content_id", "group", "split")


def stored_assignments(kept: pl.DataFrame) -> pl.DataFrame:
    """The assignments a split stores (``content_id, group, split``, one row per content_id), with ``group`` null
    where it is the record's own ``split_group`` (the key ingest wrote): the records table holds it already, so
    storing it again would copy it (0.07x of the ingest shard bytes on MOSES molecules, whose groups are all
    scaffolds; ``benchmarks/bench_scale.py``). ``DatasetStore.scan`` puts it back (``pipeline.versions.store.
    joined_assignments``); protein clusters, text-derived groups and other groups are stored as they are."""
    group = pl.col("group")
    if "split_group" in kept.columns:  # null only when every record of the content has it as its split_group
        same = (pl.col("split_group").fill_null("").ne("") & group.eq(pl.col("split_group"))).all().over("content_id")
        group = pl.when(same).then(pl.lit(None, pl.String)).otherwise(group)
    return kept.select("content_id", group.alias("group"), "split").unique("content_id", maintain_order=True)


@dataclass
class PartitionWritten:
    """What a partition's task hands back after writing its assignments: a file name and counts, no records."""

    file: str  # the assignments file, in the target folder
    rows: int
    size: int  # bytes
    counts: pl.DataFrame  # (split, domain, records, tokens) of the kept records
    excluded: pl.DataFrame  # (content_id, group) of the records decontamination removed, one per content_id
    removed_rows: int  # records decontamination removed


@dataclass
class FileSplit:
    """``split_files``' result: what the driver holds (counts, file names, the removed records)."""

    written: list[PartitionWritten]  # one per partition, in partition order
    excluded: pl.DataFrame  # (content_id, group), one row per content_id
    protein_method: str

    def counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """Records and tokens per split and domain (``record_counts`` of the kept records)."""
        parts = [w.counts for w in self.written]
        frame = pl.concat(parts) if parts else pl.DataFrame(schema={"split": pl.String, "domain": pl.String,
                                                                     "records": pl.Int64, "tokens": pl.Int64})
        summed = frame.group_by("split", "domain").agg(pl.col("records").sum(), pl.col("tokens").sum())
        counts: dict[str, dict[str, dict[str, int]]] = {"records": {}, "tokens": {}}
        for split, domain, n, tokens in summed.sort("split", "domain").iter_rows():
            counts["records"].setdefault(split, {})[domain] = int(n)
            counts["tokens"].setdefault(split, {})[domain] = int(tokens)
        return counts


def read_split_partition(config: SplitConfig, partition: Partition, storage: Storage = None) -> pl.DataFrame:
    """The columns split needs of one partition, read from its files: text only when some row has no
    ``split_group`` (blanked where it has one, as ``partition_columns`` does)."""
    optional = ("split_group", "chain_sequences") + (("metadata",) if config.time_split is not None else ())
    part = read_partition(partition, SPLIT_READ_COLUMNS, storage, optional)
    for name in optional:  # a file written before the column existed: as if unset
        if name not in part.columns:
            part = part.with_columns(pl.lit(None, pl.List(pl.String) if name == "chain_sequences" else pl.String)
                                     .alias(name))
    unset = part["split_group"].fill_null("") == ""
    if unset.any():
        text = read_partition(partition, ("text",), storage)["text"]
        part = part.with_columns(text=pl.when(unset).then(text).otherwise(pl.lit("")))
    else:
        part = part.with_columns(text=pl.lit(""))
    return part


def partition_globals(config: SplitConfig, partition: Partition, storage: Storage,
                      keys: frozenset[str]) -> PartitionGlobals:
    """Phase 1 of ``split_files`` (a Ray task): what this partition contributes to the global decisions."""
    part = read_split_partition(config, partition, storage)
    return globals_of(part, partition_groups(config, part), keys)


def write_partition_assignments(config: SplitConfig, partition: Partition, storage: Storage,
                                chain_groups: list[str], decisions: GlobalDecisions, filesystem: Any, folder: str,
                                file: str) -> PartitionWritten:
    """Phase 2 of ``split_files`` (a Ray task): this partition's assignments (``content_id, group, split``, one
    row per content_id) written to ``folder/file`` (zstd Parquet), its counts and its removed records."""
    import io

    part = read_split_partition(config, partition, storage)
    groups = partition_groups(config, part)
    if len(groups.chain_rows) != len(chain_groups):
        first = part["content_id"][int(groups.chain_rows[0])] if len(groups.chain_rows) else "?"
        raise SplitError(f"record {first}: its group is a protein cluster, but the records were said to hold no "
                         f"protein domain (domains given to split_files)")
    kept, removed = decided_partition(config, part, groups, chain_groups, decisions)
    assignments = stored_assignments(kept)
    buffer = io.BytesIO()
    assignments.write_parquet(buffer, compression="zstd")
    data = buffer.getvalue()
    filesystem.pipe_file(f"{folder}/{file}", data)
    counts = kept.group_by("split", "domain").agg(records=pl.len().cast(pl.Int64),
                                                  tokens=pl.col("n_tokens").sum().cast(pl.Int64))
    excluded = removed.select("content_id", "group").unique("content_id", maintain_order=True)
    return PartitionWritten(file, assignments.height, len(data), counts, excluded, removed.height)


def needs_globals(config: SplitConfig, excluded_raw: Sequence[str | list[str]], domains: Iterable[str] | None) -> bool:
    """Whether partitions need each other: protein clusters (any protein domain, or unknown domains), a time
    split or exclusions; else each partition decides alone, in one pass."""
    return (config.time_split is not None or bool(excluded_raw) or domains is None
            or bool(set(domains) & set(PROTEIN_DOMAINS)))


def split_files(
    config: SplitConfig, partitions: Sequence[Partition], filesystem: Any, folder: str, prefix: str,
    exclude: Sequence[str] = (), workers: int | None = None, storage: Storage = None,
    domains: Iterable[str] | None = None,
) -> FileSplit:
    """``assign_splits`` over record files: each partition's task reads its own rows (``read_split_partition``)
    and writes its assignments to ``folder/<prefix>-<partition>.parquet`` on ``filesystem`` (fsspec); the
    driver holds what is global and small (protein chains, per-group first years, excluded groups, counts).

    Two passes when partitions need each other (``needs_globals``; ``domains``: the domains the records hold,
    when known): ``partition_globals`` on every partition, ``merge_globals`` here, then
    ``write_partition_assignments``; else only the second. The assignments of partition i are the kept rows of
    partition i in order, so an export task reads its records and exactly their assignments."""
    excluded_raw = exclusion_groups(exclude)
    keys = excluded_keys(excluded_raw)
    task_config = replace(config, use_ray=False)  # inside a task: its own rows, in its own process
    names = [f"{prefix}-{i:05d}.parquet" for i in range(len(partitions))]
    filesystem.makedirs(folder, exist_ok=True)
    if workers is None:
        if needs_globals(config, excluded_raw, domains):
            decisions = merge_globals(config, [partition_globals(config, p, storage, keys) for p in partitions],
                                      excluded_raw)
        else:
            decisions = GlobalDecisions([[] for _ in partitions], None, frozenset(), "none")
        written = [write_partition_assignments(config, p, storage, chains, decisions, filesystem, folder, name)
                   for p, chains, name in zip(partitions, decisions.chain_groups, names, strict=True)]
    else:
        import ray

        from pipeline.partition_tasks import ordered_results, segments_label
        from pipeline.ray_runtime import ray_session

        def describe(index: int) -> str:
            return segments_label(partitions[index])

        with ray_session(num_cpus=workers):
            if needs_globals(config, excluded_raw, domains):
                calls = ((task_config, p, storage, keys) for p in partitions)
                decisions = merge_globals(config, list(ordered_results("split", partition_globals, calls,
                                                                       describe=describe)), excluded_raw)
            else:
                decisions = GlobalDecisions([[] for _ in partitions], None, frozenset(), "none")
            shared = ray.put(replace(decisions, chain_groups=[]))  # the per-group tables, sent once
            calls = ((task_config, p, storage, chains, shared, filesystem, folder, name)
                     for p, chains, name in zip(partitions, decisions.chain_groups, names, strict=True))
            written = list(ordered_results("split", write_partition_assignments, calls, describe=describe))
    excluded = [w.excluded for w in written]
    removed = (pl.concat(excluded).unique("content_id", maintain_order=True) if excluded
               else pl.DataFrame(schema={"content_id": pl.String, "group": pl.String}))
    return FileSplit(written, removed, decisions.method)


def partition_groups(config: SplitConfig, part: pl.DataFrame) -> PartitionGroups:
    """Group keys of one partition without clustering: from ``split_group``, else chains to cluster, else
    the text (``record_group``); each group's hash split; each group's first year for the time split."""
    fixed, chain_rows, chain_lists, text_rows = group_sources(part)
    fallback = pl.when(pl.col("dedup_key") == "").then(pl.col("content_id")).otherwise(pl.col("dedup_key"))
    columns = part[text_rows].select("content_id", "source", "source_id", "task", "text", fallback=fallback)
    raw: list[str | list[str]] = []
    if columns.height:
        arrow = columns.to_arrow()
        raw = ray_record_groups(arrow, config.batch_rows) if config.use_ray else record_groups(arrow)
    keyed = [i for i, r in enumerate(raw) if isinstance(r, str)]
    group = fixed
    if keyed:
        rows = pl.Series(text_rows[keyed], dtype=pl.UInt32)
        group = group.scatter(rows, pl.Series([raw[i] for i in keyed], dtype=pl.String))
    chained = [i for i, r in enumerate(raw) if isinstance(r, list)]
    chain_rows = np.concatenate([text_rows[chained], chain_rows]).astype(np.int64)
    chain_lists = [raw[i] for i in chained] + chain_lists
    unique = group.unique().to_list()
    by_group = pl.Series([hash_split(g, config) if g else None for g in unique], dtype=pl.String)
    split = group.replace_strict(unique, by_group, return_dtype=pl.String).alias("split")
    first_years = pl.DataFrame(schema={"group": pl.String, "year": pl.Int64})
    chain_years = pl.Series("year", [None] * len(chain_rows), pl.Int64)
    time_split = config.time_split
    if time_split is not None:
        year = pl.col("metadata").str.json_path_match(f"$.{time_split.field}").cast(pl.Int64, strict=False)
        years = part.select(group=group, year=pl.when(pl.col("domain").is_in(time_split.domains)).then(year))
        keyed_years = years.filter(pl.col("group") != "").drop_nulls("year")
        first_years = keyed_years.group_by("group").agg(pl.col("year").min())
        chain_years = years["year"].gather(chain_rows)  # their group is known only after clustering
    return PartitionGroups(group.alias("group"), split, chain_rows, chain_lists, first_years, chain_years)


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
