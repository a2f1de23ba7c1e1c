"""The partition-parallel dataset stages (Ray tasks) give what the single-process path gives, on real ingest
output: shards made by running the real sources (ChEMBL chemreps, the EGFR SMILES export, USPTO reactions,
UniProt proteins) on tests/data files in this process, the ChEMBL file read twice under two names:
real exact duplicates.

The export is also checked against megatron-core's own ``IndexedDatasetBuilder`` writing the same
documents one at a time (the independent reference): byte-identical ``.bin`` and ``.idx``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from fsspec.implementations.local import LocalFileSystem

from grammar.tokenizer import default_tokenizer
from pipeline.convert import convert_items
from pipeline.dedup import ExactDedupConfig, StreamingConfig, exact_dedup, exact_dedup_files
from pipeline.export_megatron import ExportConfig, export_megatron, megatron_dtype
from pipeline.partitions import plan_partitions
from pipeline.records import SHARD_SCHEMA
from pipeline.sources import make_source
from pipeline.split import (
    ProteinClusterConfig,
    SplitConfig,
    SplitError,
    TimeSplit,
    assign_splits,
    split_files,
)
from pipeline.versions.stage import record_counts
from pipeline.versions.store import joined_assignments

DATA = Path(__file__).resolve().parents[1] / "data"
CHEMREPS = DATA / "chembl" / "chembl_30_chemreps_100.txt"
INPUTS = (
    ("chembl", CHEMREPS, {}),
    ("smiles", DATA / "chembl" / "EGFR_compounds_teachopencadd.csv",
     {"column": "smiles", "id_column": "molecule_chembl_id"}),
    ("uspto", DATA / "uspto" / "USPTO_50K_sample.csv", {}),
    ("uniprot", DATA / "uniprot" / "uniprotkb_UP000000429_Hpylori26695_proteome_first1100.fasta", {}),
)
SPLIT = SplitConfig(fractions=(0.7, 0.15, 0.15), proteins=ProteinClusterConfig(method="minhash"))
WEIGHTS = {split: {"molecule": 0.5, "reaction": 0.3, "protein": 0.2} for split in ("train", "valid", "test")}


def ingested(source_name: str, path: Path, options: dict | None = None) -> pl.DataFrame:
    source = make_source(source_name, options)
    result = convert_items(source, default_tokenizer(), list(source.read(str(path))))
    return pl.from_arrow(pa.Table.from_pylist(result.records, schema=SHARD_SCHEMA))


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> pl.DataFrame:
    copy = tmp_path_factory.mktemp("second") / "chembl_30_chemreps_100_copy.txt"
    shutil.copy(CHEMREPS, copy)
    frames = [ingested(name, path, options) for name, path, options in INPUTS] + [ingested("chembl", copy)]
    return pl.concat(frames)


@pytest.fixture(scope="module")
def on_ray():
    """One local Ray for the module's Ray paths (each stage joins it rather than starting its own)."""
    from pipeline.ray_runtime import ray_session

    with ray_session(num_cpus=2):
        yield


@pytest.fixture(scope="module")
def shard_files(records, tmp_path_factory) -> list[Path]:
    """The ingest output as several Parquet files, as the engine writes them."""
    root = tmp_path_factory.mktemp("shards")
    paths = []
    for i, part in enumerate(records.iter_slices(1500)):
        paths.append(root / f"part-{i:05d}.parquet")
        part.write_parquet(paths[-1])
    return paths


@pytest.fixture(scope="module")
def split_records(records) -> pl.DataFrame:
    return assign_splits(SPLIT, exact_dedup(ExactDedupConfig(), records).kept).records


def reference_export(records: pl.DataFrame, out: Path) -> None:
    """megatron-core's builder, one document at a time, in record order per (split, domain)."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    tokenizer = default_tokenizer()
    dtype = megatron_dtype(tokenizer.vocab_size)
    for (split, domain), rows in records.group_by("split", "domain", maintain_order=True):
        prefix = out / "megatron" / split / domain
        prefix.parent.mkdir(parents=True, exist_ok=True)
        builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=dtype)
        for ids in rows["input_ids"].to_list():
            document = np.asarray([*tokenizer.prefix_ids, *ids, tokenizer.eod_id], dtype=np.int64)
            builder.add_document(document, [len(document)])
        builder.finalize(f"{prefix}.idx")


def test_real_ingest_fixture_has_every_domain_and_duplicates(records, split_records):
    assert set(records["domain"].unique()) == {"molecule", "reaction", "protein"}
    assert split_records.height < records.height  # the second ChEMBL file's molecules are duplicates
    assert set(split_records["split"].unique()) == {"train", "valid", "test"}


def test_exact_dedup_on_ray_keeps_what_the_single_process_paths_keep(records, shard_files, on_ray, tmp_path):
    stream = StreamingConfig(batch_rows=500, bucket_rows=700)  # several batches per file, 10 buckets
    local = exact_dedup_files(ExactDedupConfig(), shard_files, tmp_path / "local", stream)
    ray = exact_dedup_files(ExactDedupConfig(), shard_files, tmp_path / "ray", stream, workers=2)
    in_memory = exact_dedup(ExactDedupConfig(), records)
    assert ray.rows_in == local.rows_in == records.height
    assert ray.rows_kept == local.rows_kept == in_memory.kept.height < records.height
    columns = ["content_id", "source", "source_id", "source_uri"]
    for streamed in (local, ray):
        kept = pl.read_parquet(streamed.kept_files)
        assert kept.select(columns).sort(columns).equals(in_memory.kept.select(columns).sort(columns))
    assert pl.read_parquet(ray.duplicates_file).equals(pl.read_parquet(local.duplicates_file))
    one_bucket = exact_dedup_files(ExactDedupConfig(), shard_files, tmp_path / "one", workers=2)
    assert pl.read_parquet(one_bucket.duplicates_file).sort("_file", "_row").equals(
        pl.read_parquet(local.duplicates_file).sort("_file", "_row"))
    assert [pl.read_parquet(p).equals(pl.read_parquet(q)) for p, q in zip(ray.kept_files, local.kept_files,
                                                                          strict=True)] == [True] * len(shard_files)


def test_split_on_ray_assigns_what_one_partition_in_process_assigns(records, on_ray, tmp_path):
    """Groups from the columns (molecules, reactions), from the text (the same rows without the columns)
    and from protein clusters; with the reactions' time split and exclusions (dedup keys, a protein's text);
    partitions of 700 rows on Ray. Over files (``split_files``: each task reads its rows from three Parquet
    files and writes its assignments), in process and on Ray: the same assignments, partition by partition."""
    deduped = exact_dedup(ExactDedupConfig(), records).kept
    without_columns = deduped.filter(pl.col("domain") == "molecule").head(300).drop("split_group", "chain_sequences")
    mixed = pl.concat([deduped, without_columns.with_columns(source=pl.lit("older-shards"))], how="diagonal")
    config = SplitConfig(fractions=(0.7, 0.15, 0.15), proteins=ProteinClusterConfig(method="minhash"),
                         time_split=TimeSplit(valid_from=2014, test_from=2015))
    exclude = mixed.filter(pl.col("domain") == "molecule")["dedup_key"].head(20).to_list()
    exclude.append(mixed.filter(pl.col("domain") == "protein")["text"][5])
    one = assign_splits(config, mixed, exclude)
    many = assign_splits(config, mixed, exclude, workers=2, partition_rows=700)
    assert many.protein_method == one.protein_method == "minhash"
    assert many.records.equals(one.records) and many.excluded.equals(one.excluded)
    assert one.excluded.height and set(one.records["split"]) == {"train", "valid", "test"}
    assert one.records.filter(pl.col("source") == "older-shards")["group"].str.starts_with("scaffold:").any()
    years = one.records.filter(pl.col("domain") == "reaction")["metadata"].str.json_path_match("$.year")
    assert years.cast(pl.Int64, strict=False).is_between(2014, 2016).any()  # the time split decides some

    files = []
    for i, (start, length) in enumerate(((0, 1000), (1000, 1500), (2500, mixed.height))):
        files.append(str(tmp_path / f"records-{i}.parquet"))
        mixed.slice(start, length).write_parquet(files[-1])
    plan = plan_partitions(files, 700)
    assert len(plan) > len(files) and {len(p) for p in plan} == {1, 2}  # files cut, and grouped
    expected = one.records.select("content_id", "group", "split")
    for workers in (None, 2):
        folder = tmp_path / f"assignments-{workers}"
        result = split_files(config, plan, LocalFileSystem(), str(folder), "part", exclude, workers=workers)
        assert result.protein_method == "minhash"
        assert result.excluded.equals(one.excluded.select("content_id", "group").unique("content_id",
                                                                                        maintain_order=True))
        assert sum(w.removed_rows for w in result.written) == one.excluded.height
        start = 0
        for partition, written in zip(plan, result.written, strict=True):
            rows = sum(s.rows for s in partition)
            kept_ids = mixed.slice(start, rows).join(one.records.select("content_id"), on="content_id",
                                                     how="semi")["content_id"].unique(maintain_order=True)
            part = pl.read_parquet(folder / written.file)
            assert part["content_id"].equals(kept_ids)  # exactly the partition's kept records, in order
            start += rows
        stored = pl.concat([pl.read_parquet(folder / w.file) for w in result.written])
        # a group equal to the record's split_group is left to the records (null here), the others stored (text-
        # derived groups, protein clusters) ...
        assert stored["group"].is_null().any() and stored["group"].is_not_null().any()
        # ... and DatasetStore.scan's join puts it back: the same rows as the split in memory
        joined = joined_assignments(mixed.lazy(), stored.lazy()).select(expected.columns).collect()
        assert joined.equals(expected)
        assert result.counts() == record_counts(one.records)


def test_split_files_in_one_pass_when_no_partition_needs_another(records, tmp_path):
    """Molecules only, no time split, no exclusions: each partition decides alone and writes at once (one
    pass); the same assignments as in memory. Told wrongly that no protein is there, it says which record."""
    molecules = exact_dedup(ExactDedupConfig(), records).kept.filter(pl.col("domain") == "molecule")
    path = tmp_path / "molecules.parquet"
    molecules.write_parquet(path)
    plan = plan_partitions([str(path)], 150)
    result = split_files(SPLIT, plan, LocalFileSystem(), str(tmp_path / "a"), "part", domains={"molecule"})
    stored = pl.concat([pl.read_parquet(tmp_path / "a" / w.file) for w in result.written])
    assert stored["group"].null_count() == stored.height  # every molecule's group is its ingest split_group
    joined = joined_assignments(molecules.lazy(), stored.lazy()).select("content_id", "group", "split").collect()
    assert joined.equals(assign_splits(SPLIT, molecules).records.select("content_id", "group", "split"))
    everything = tmp_path / "all.parquet"
    records.filter(pl.col("domain") == "protein").write_parquet(everything)
    with pytest.raises(SplitError, match=r"record \S+: its group is a protein cluster"):
        split_files(SPLIT, plan_partitions([str(everything)], 500), LocalFileSystem(), str(tmp_path / "b"), "part",
                    domains={"molecule"})


def test_export_in_process_and_on_ray_are_byte_identical_to_megatrons_builder(split_records, on_ray, tmp_path):
    reference_export(split_records, tmp_path / "reference")
    dataset = {"name": "t", "version": "v"}
    config = ExportConfig(docs_per_shard=97)  # many partitions, each holding several (split, domain)
    export_megatron(config, split_records.lazy(), WEIGHTS, tmp_path / "local", default_tokenizer(), dataset)
    export_megatron(config, split_records, WEIGHTS, tmp_path / "ray", default_tokenizer(), dataset, workers=2)
    expected = sorted(p.relative_to(tmp_path / "reference") for p in (tmp_path / "reference").rglob("*.*"))
    assert len(expected) == 2 * split_records.select("split", "domain").unique().height
    for run in ("local", "ray"):
        written = sorted(p.relative_to(tmp_path / run) for p in (tmp_path / run / "megatron").rglob("*.*"))
        assert [Path("megatron") / p.relative_to("megatron") for p in written] == expected
        for path in expected:
            assert (tmp_path / run / path).read_bytes() == (tmp_path / "reference" / path).read_bytes(), (run, path)


def test_workflow_stages_with_workers_give_the_versions_and_bytes_of_the_in_process_run(shards, on_ray, tmp_path,
                                                                                        monkeypatch):
    """``workers`` in the stages' configs (what a workflow's ``dedup.streaming.workers``, ``split.config.workers``
    and ``export.workers`` set) runs the partitions as Ray tasks: the same version ids (workers is execution
    only) and the same exported bytes as the in-process run, on the real-ingest fixture of the dataset tests."""
    import pipeline.stages.dedup
    import pipeline.stages.export
    import pipeline.stages.split
    from pipeline.datasets import dedup_dataset, export_megatron_dataset, mix_dataset, split_dataset
    from pipeline.stages.mix import counted_tokens, token_counts
    from pipeline.versions import DatasetStore

    asked: list[tuple[str, int | None]] = []  # the workers each stage's partitioned function was given

    def spy(module, name: str) -> None:
        original = getattr(module, name)

        def wrapper(*args, workers=None, **kwargs):
            asked.append((name, workers))
            return original(*args, workers=workers, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    spy(pipeline.stages.dedup, "exact_dedup_files")
    spy(pipeline.stages.split, "split_files")
    spy(pipeline.stages.export, "export_files")

    def run(root: Path, workers: int | None) -> tuple[list[str], dict[str, bytes]]:
        store = DatasetStore(root)
        dedup = dedup_dataset(store, [str(shards.root)], "d", streaming=StreamingConfig(bucket_rows=500,
                                                                                         workers=workers))
        split_config = SplitConfig(proteins=ProteinClusterConfig(method="minhash"), workers=workers, partition_rows=400)
        split = split_dataset(store, dedup.manifest.ref, "d", split_config)
        mixed = mix_dataset(store, split.manifest.ref, "d")
        exported = export_megatron_dataset(store, mixed.manifest.ref, "d", ExportConfig(docs_per_shard=300,
                                                                                        workers=workers))
        assert not exported.reused
        files = root / "d" / "files" / exported.manifest.version
        # The tasks read their partitions from the store's files: the records assign_splits gives in memory, and
        # megatron-core's builder's bytes for them.
        assert split.manifest.outputs["partitions"] and "partitions" in mixed.manifest.outputs
        expected = assign_splits(split_config, store.read(dedup.manifest)).records
        assert store.read(split.manifest).equals(expected)
        # mix reads the split's counts instead of the records: the same tokens and documents, in the same order
        from_counts = counted_tokens(mixed.manifest, store, 2)
        assert [list(d.items()) for d in from_counts] == [list(d.items()) for d in token_counts(expected.lazy(), 2)]
        reference_export(expected, root / "reference")
        for path in (root / "reference").rglob("*.*"):
            assert path.read_bytes() == (files / path.relative_to(root / "reference")).read_bytes(), path
        return ([r.manifest.version for r in (dedup, split, mixed, exported)],
                {str(p.relative_to(files)): p.read_bytes() for p in sorted(files.rglob("*")) if p.is_file()})

    in_process = run(tmp_path / "in_process", None)
    on_workers = run(tmp_path / "on_workers", 2)
    stages = ["exact_dedup_files", "split_files", "export_files"]
    assert asked == [(name, None) for name in stages] + [(name, 2) for name in stages]
    assert on_workers[0] == in_process[0]
    assert any(name.endswith(".bin") for name in in_process[1]) and on_workers[1] == in_process[1]
