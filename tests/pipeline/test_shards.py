"""The shard writer's column settings (``pipeline.shards.parquet_options``) on a real UniProt part and a real
ChEMBL part: the encodings the docstring states are the ones in the file, the part is no larger than Arrow's
default zstd write of the same rows, and the readers of the pipeline (pyarrow, polars, deltalake, DuckDB) give
back the same rows and the list<int32> token ids.
"""

from __future__ import annotations

import os
from pathlib import Path

import deltalake
import duckdb
import fsspec
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from grammar.tokenizer import default_tokenizer
from pipeline.convert import convert_items
from pipeline.records import SHARD_SCHEMA
from pipeline.shards import parquet_options, write_table
from pipeline.sources import make_source

DATA = Path(__file__).resolve().parents[1] / "data"
INPUTS = {
    "uniprot": DATA / "uniprot/uniprotkb_UP000000429_Hpylori26695_proteome_first1100.fasta",
    "chembl": DATA / "chembl/chembl_30_chemreps_100.txt",
}


@pytest.fixture(scope="module", params=sorted(INPUTS))
def part(request, tmp_path_factory) -> tuple[pa.Table, Path]:
    """A records part of a real input written by the shard writer (uniprot by blocks, as ingest reads it)."""
    source = make_source(request.param, {})
    reader = source.read_blocks(str(INPUTS[request.param]), 4096) if hasattr(source, "read_blocks") else \
        source.read(str(INPUTS[request.param]))
    table = convert_items(source, default_tokenizer(), list(reader)).records_table()
    assert table is not None and table.num_rows > 50
    folder = tmp_path_factory.mktemp(request.param)
    write_table(table, str(folder / "part-000000-000000.parquet"))
    return table, folder / "part-000000-000000.parquet"


def test_columns_are_written_with_the_stated_settings(part):
    _, path = part
    metadata = pq.read_metadata(path)
    columns = {metadata.schema.column(i).path: metadata.row_group(0).column(i) for i in range(metadata.num_columns)}
    ids = columns["input_ids.list.element"]
    assert "BYTE_STREAM_SPLIT" in ids.encodings and ids.dictionary_page_offset is None
    assert not ids.is_stats_set and not columns["text"].is_stats_set
    for unique in ("content_id", "text", "dedup_key", "metadata", "source_id"):
        assert columns[unique].dictionary_page_offset is None, unique
    for repetitive in ("source", "domain", "task"):
        assert columns[repetitive].dictionary_page_offset is not None and columns[repetitive].is_stats_set
    assert all(c.compression == "ZSTD" for c in columns.values())


def test_the_part_is_no_larger_than_arrows_default_zstd_write(part, tmp_path):
    table, path = part
    pq.write_table(table, tmp_path / "default.parquet", compression="zstd")
    assert os.path.getsize(path) <= os.path.getsize(tmp_path / "default.parquet")


def test_every_reader_gives_back_the_rows_and_the_token_ids(part, tmp_path):
    table, path = part
    assert pq.read_schema(path).equals(SHARD_SCHEMA)
    assert pq.read_table(path).equals(table)
    ids = table["input_ids"].to_pylist()
    assert pl.read_parquet(path)["input_ids"].to_list() == ids
    scanned = pl.scan_parquet([str(path)], missing_columns="insert").collect()
    assert scanned["content_id"].to_list() == table["content_id"].to_pylist()
    assert duckdb.sql(f"select input_ids from '{path}'").fetchall() == [(i,) for i in ids]
    delta = tmp_path / "delta"
    delta.mkdir()
    (delta / path.name).write_bytes(path.read_bytes())
    deltalake.convert_to_deltalake(str(delta))
    assert pl.scan_delta(str(delta)).collect()["input_ids"].to_list() == ids
    rust = deltalake.QueryBuilder().register("t", deltalake.DeltaTable(str(delta))).execute("select input_ids from t")
    assert rust.read_all().column(0).to_pylist() == ids  # arrow-rs's own Parquet reader (DataFusion)


def test_a_part_written_through_fsspec_has_the_same_bytes(part):
    table, path = part
    uri = f"memory://shards/{path.parent.name}/{path.name}"
    write_table(table, uri)
    with fsspec.open(uri, "rb") as handle:
        assert handle.read() == path.read_bytes()


def test_a_table_without_token_ids_keeps_arrows_defaults_for_its_other_columns():
    options = parquet_options(pa.schema([("reason", pa.string()), ("input_ids", pa.int32())]))
    assert options["column_encoding"] is None and options["use_dictionary"] == ["reason", "input_ids"]
