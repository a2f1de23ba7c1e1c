"""The uniprot source's batch path (``read_blocks`` + ``convert_block``, see ``pipeline.sources.uniprot``) against
its per-record path (``read`` + ``convert``), which the other uniprot tests check against Biopython and the
headers: the shard rows, reject rows and accounting of both must be equal, byte for byte, on every bundled FASTA
and flat file, on a file of odd headers and policy cases built from real sequences, and on odd and damaged flat
files built from real entries; flat-file rows are also checked against ``Bio.SwissProt.parse``. The token ids of
the numpy lookup are checked against the HF (Rust) tokenizer's own encoding of the same texts.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pyarrow as pa
import pytest
from Bio import SeqIO, SwissProt

from grammar.tokenizer import default_tokenizer
from pipeline.convert import convert_items
from pipeline.ingest import read_file_chunks
from pipeline.records import SourceBlock
from pipeline.sources import make_source
from tests.pipeline.sources.block_helpers import OtherKindTokenizer, assert_same, by_blocks, damaged, per_record

FASTA_FILES = [
    "uniprot/uniprotkb_UP000000429_Hpylori26695_proteome_first1100.fasta",
    "uniprot/swissprot_8entries_oldstyle_header_biopython_multi_ex.fasta",
    "uniprot/uniref50_style_headers_Ecoli_K12_first40.fasta",
    "uniprot/pdb_seqres_excerpt_first28records.txt",
]


FLAT_FILES = [
    "uniprot/swissprot_flatfile_8entries_biopython_multi_ex.dat",
    "uniprot/uniprotkb_flatfile_6entries_uniprot-store_flatFIleSample.dat",
]


def odd_headers_fasta(data_dir: Path, tmp_path: Path) -> Path:
    """Real H. pylori records under headers the block path must leave to the per-record path or read alike."""
    records = list(SeqIO.parse(data_dir / FASTA_FILES[0], "fasta"))[:30]
    seq = [str(r.seq) for r in records]
    std = "OS=Helicobacter pylori (strain ATCC 700392 / 26695) OX=85962"
    cases = [
        (f"sp|O1|A_HELPY Plain {std} GN=hp1 PE=1 SV=1", seq[0]),
        (f"tr|O2|A_HELPY Without gene {std} PE=2 SV=3", seq[1] + "U"),
        (f'sp|O3|A_HELPY A "quoted" name {std} GN=hp3 PE=1 SV=1', seq[2]),
        (f"sp|O4|A_HELPY Protéine {std} GN=hp4 PE=1 SV=1", seq[3]),
        (f"sp|O5|A_HELPY Tag in the value {std} GN=hp5 PE=1 SV=1 OS=Other", seq[4]),
        ("sp|O6|A_HELPY Double  space OS=Helicobacter pylori  OX=85962 GN=hp6 PE=1 SV=1", seq[5]),
        ("sp|O7|A_HELPY Not a number OS=H. pylori OX=abc GN=hp7 PE=1 SV=1", seq[6]),
        (f"sp|O8|A_HELPY Leading zero {std} GN=hp8 PE=01 SV=1", seq[7]),
        (f"sp|O9|A_HELPY {std} GN=hp9 PE=1 SV=1", seq[8]),
        (f"sp|O10|A_HELPY Empty gene {std} GN= PE=1 SV=1", seq[9]),
        (f"sp|O11|A_HELPY Ambiguous {std} GN=hp11 PE=1 SV=1", seq[10][:10] + "BZJ" + seq[10][10:]),
        (f"sp|O12|A_HELPY Lower case {std} GN=hp12 PE=1 SV=1", seq[11].lower()),
        (f"sp|O13|A_HELPY Empty {std} GN=hp13 PE=1 SV=1", ""),
        (f"sp|O14|A_HELPY Non-ASCII letter {std} GN=hp14 PE=1 SV=1", seq[13][:5] + "é" + seq[13][5:]),
        (f"UniRef50_O15 Cluster: thing n=3 Tax={std[3:]} TaxID=85962 RepID=A_HELPY", seq[14]),
        (f"101m_A mol:protein length:{len(seq[15])}  MYOGLOBIN", seq[15]),
        (f"101m_B mol:protein length:{len(seq[16]) + 1}  MYOGLOBIN", seq[16]),
        ("1bna_A mol:na length:12  DNA", "CGCGAATTCGCG"),
        ("plain id with words", seq[18] + "X"),
        (f"sp|O20|A_HELPY Back\\slash {std} GN=hp20 PE=1 SV=1", seq[19]),
        (f"sp|O21|A_HELPY Stop codon {std} GN=hp21 PE=1 SV=1", seq[20] + "*"),
        (f"sp|O22|A_HELPY Control\x01char {std} GN=hp22 PE=1 SV=1", seq[21]),
        (f"sp|O23|A_HELPY Tab\tinside {std} GN=hp23 PE=1 SV=1", seq[22]),
        (f"sp|O24|A_HELPY Equals = sign {std} GN=hp24 PE=1 SV=1", seq[23]),
        (f"tr|O25|A_HELPY Last plain one {std} GN=hp25 PE=5 SV=2", seq[24]),
        (f"sp|O26|A_HELPY Tag PE=3 in the description {std} GN=hp26 PE=1 SV=1", seq[25]),
        ("sp|O27|A_HELPY Space after OS= Helicobacter OX=85962 GN=hp27 PE=1 SV=1", seq[26]),
    ]
    path = tmp_path / "odd_headers.fasta"
    path.write_text("".join(f">{header}\n{sequence}\n" for header, sequence in cases))
    return path


@pytest.mark.parametrize("path", FASTA_FILES)
def test_block_rows_equal_the_per_record_rows(data_dir: Path, path: str) -> None:
    source = make_source("uniprot")
    expected = per_record(source, data_dir / path)
    for max_records in (7, 4096):  # blocks that end mid-file, and one block for the file
        assert_same(expected, by_blocks(source, data_dir / path, max_records))


def test_odd_headers_and_policy_rejects_agree(data_dir: Path, tmp_path: Path) -> None:
    path = odd_headers_fasta(data_dir, tmp_path)
    for options in ({}, {"ambiguous_residues": "reject", "min_length": 100, "max_length": 400}):
        source = make_source("uniprot", options)
        expected = per_record(source, path)
        assert expected.stats.items_rejected >= 5  # the policy cases really are rejects
        for max_records in (4, 1000):
            assert_same(expected, by_blocks(source, path, max_records))
    # The templated headers are the standard ones; every other kind took the per-record reading.
    rows = by_blocks(make_source("uniprot"), path, 1000).records_table().to_pylist()
    metadata = {row["source_id"]: json.loads(row["metadata"]) for row in rows}
    assert metadata["O1"]["gene"] == "hp1" and "gene" not in metadata["O2"] and metadata["O10"]["gene"] == ""
    assert metadata["O5"]["organism"] == "Other" and metadata["O3"]["description"] == 'A "quoted" name'
    assert metadata["O26"]["description"] == "Tag" and metadata["O27"]["organism"] == "Helicobacter"


@pytest.mark.parametrize("damage", ["corrupt_gzip", "not_utf8"])
def test_read_failure_mid_file_keeps_the_records_before_it(data_dir: Path, tmp_path: Path, damage: str) -> None:
    plain = (data_dir / FASTA_FILES[0]).read_bytes()
    content = damaged(plain, damage)
    path = tmp_path / "damaged.fasta.gz"
    path.write_bytes(content)
    source = make_source("uniprot")
    expected = per_record(source, path)
    assert expected.rejects[-1]["reason_code"] == damage and expected.stats.items_written > 100
    assert_same(expected, by_blocks(source, path, 64))


def test_lookup_token_ids_equal_the_rust_tokenizer(data_dir: Path) -> None:
    tokenizer = default_tokenizer()
    rows = by_blocks(make_source("uniprot"), data_dir / FASTA_FILES[0], 4096).records_table()
    texts = rows["text"].to_pylist()
    assert rows["input_ids"].to_pylist() == tokenizer.encode_batch(texts, engine="rust")


def test_other_tokenizer_kinds_encode_through_the_tokenizer(data_dir: Path, tmp_path: Path) -> None:
    path = odd_headers_fasta(data_dir, tmp_path)
    source = make_source("uniprot")
    entries = list(source.read_blocks(str(path), 1000))
    via_tokenizer = convert_items(source, OtherKindTokenizer(), entries, "rust")
    assert_same(per_record(source, path), via_tokenizer)


def test_ingest_chunks_count_block_records(data_dir: Path) -> None:
    """The engine's read step chunks blocks by their records (no chunk over chunk_items) across files."""
    files = [str(data_dir / FASTA_FILES[0]), str(data_dir / FASTA_FILES[3])]
    batch = {"group_index": [0], "uris": [json.dumps(files)]}
    chunks = [pickle.loads(row["items"][0]) for row in read_file_chunks(batch, "uniprot", {}, 500)]
    sizes = [sum(len(e) if isinstance(e, SourceBlock) else 1 for e in chunk) for chunk in chunks]
    assert sizes == [500, 500, 100 + 28]
    total = pa.concat_tables([convert_items(make_source("uniprot"), default_tokenizer(), c).records_table()
                              for c in chunks])
    assert total.num_rows == 1128 and total["source_id"][1100].as_py() == "10mh_A"


def odd_flat_file(data_dir: Path, tmp_path: Path, ending: str) -> Path:
    """Real Swiss-Prot and UniProtKB entries with a bad entry, a length mismatch, an ambiguity code, blank lines
    between entries, CRLF line ends and an empty entry, ending as ``ending`` says: truncated, without a final newline,
    or whole."""
    entries = []
    for name in FLAT_FILES:
        text = (data_dir / name).read_text()
        entries += [entry + "//\n" for entry in text.split("//\n") if entry.strip()]
    entries[2] = entries[2].replace("Reviewed;", "Reviewd;", 1)  # an ID line Bio.SwissProt refuses
    entries[3] = entries[3].replace(" 260 AA.", " 261 AA.", 1)  # the SQ block holds 260
    sequence_line = next(line for line in entries[5].splitlines() if line.startswith("     "))
    entries[5] = entries[5].replace(sequence_line, sequence_line[:5] + "B" + sequence_line[6:], 1)
    entries[8] = "\n\n" + entries[8]  # blank lines before an entry: its text, which Bio.SwissProt refuses
    entries[9] = entries[9].replace("\n", "\r\n")
    entries[10] += "//\n"  # a terminator line alone: an empty entry
    text = "".join(entries)
    if ending == "truncated":
        text += entries[0][: len(entries[0]) // 2]
    elif ending == "no final newline":
        text = text.rstrip("\n")
    path = tmp_path / f"odd_{ending.replace(' ', '_')}.dat"
    path.write_bytes(text.encode())
    return path


@pytest.mark.parametrize("path", FLAT_FILES)
def test_flat_file_block_rows_equal_the_per_record_rows_and_biopython(data_dir: Path, path: str) -> None:
    source = make_source("uniprot")
    expected = per_record(source, data_dir / path)
    for max_records in (3, 4096):
        got = by_blocks(source, data_dir / path, max_records)
        assert_same(expected, got)
    rows = got.records_table()
    with open(data_dir / path) as handle:  # Biopython's own parse of the whole file
        records = list(SwissProt.parse(handle))
    assert rows["source_id"].to_pylist() == [r.accessions[0] for r in records]
    assert rows["text"].to_pylist() == [f"<ProteinS>{r.sequence}<ProteinE>" for r in records]


@pytest.mark.parametrize("ending", ["truncated", "no final newline", "whole"])
def test_flat_file_rejects_and_odd_layouts_agree(data_dir: Path, tmp_path: Path, ending: str) -> None:
    path = odd_flat_file(data_dir, tmp_path, ending)
    for options in ({}, {"ambiguous_residues": "reject", "max_length": 500}):
        source = make_source("uniprot", options)
        expected = per_record(source, path)
        codes = {r["reason_code"] for r in expected.rejects}
        assert {"invalid_flatfile_entry", "length_mismatch"} <= codes and expected.stats.items_written >= 5
        assert ("truncated_record" in codes) == (ending == "truncated")
        for max_records in (1, 4, 4096):
            assert_same(expected, by_blocks(source, path, max_records))


@pytest.mark.parametrize("damage", ["corrupt_gzip", "not_utf8"])
def test_flat_file_read_failure_keeps_the_entries_before_it(data_dir: Path, tmp_path: Path, damage: str) -> None:
    plain = b"".join((data_dir / name).read_bytes() for name in FLAT_FILES) * 3
    content = damaged(plain, damage)
    path = tmp_path / "damaged.dat.gz"
    path.write_bytes(content)
    source = make_source("uniprot")
    expected = per_record(source, path)
    assert expected.rejects[-1]["reason_code"] == damage and expected.stats.items_written > 5
    for max_records in (2, 4096):
        assert_same(expected, by_blocks(source, path, max_records))
