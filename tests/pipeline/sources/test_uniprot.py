"""The uniprot source on the real fixtures (tests/data/uniprot, see tests/data/PROVENANCE.md): UniProtKB FASTA with
and without ``OX=``, UniProt flat files, a UniRef-style FASTA and a wwPDB pdb_seqres excerpt.

References are independent of the source: sequences and flat-file fields from ``Bio.SeqIO`` (its own FASTA and
``swiss`` parsers), header fields read here with plain string operations, record counts stated in the
provenance table, and the flat file against the FASTA of the same eight Swiss-Prot entries.
"""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import fsspec
import pyarrow as pa
import pytest
from Bio import SeqIO

from grammar.formats import FORMATS
from grammar.tokenizer import default_tokenizer
from pipeline.check import check_roundtrip, check_sample
from pipeline.convert import convert_items
from pipeline.records import SHARD_SCHEMA, Reject, Sample, SourceItem
from pipeline.sources import make_source
from pipeline.sources.base import Source, convert_file
from pipeline.split import ProteinClusterConfig, SplitConfig, assign_splits

HPYLORI = "uniprot/uniprotkb_UP000000429_Hpylori26695_proteome_first1100.fasta"
OLD_STYLE = "uniprot/swissprot_8entries_oldstyle_header_biopython_multi_ex.fasta"
SWISS_DAT = "uniprot/swissprot_flatfile_8entries_biopython_multi_ex.dat"
STORE_DAT = "uniprot/uniprotkb_flatfile_6entries_uniprot-store_flatFIleSample.dat"
UNIREF = "uniprot/uniref50_style_headers_Ecoli_K12_first40.fasta"
SEQRES = "uniprot/pdb_seqres_excerpt_first28records.txt"
# B-DNA dodecamer 1bna (tests/data/pdb/mmcif/1bna.cif): both chains, in pdb_seqres.txt's layout.
SEQRES_NA = (
    ">1bna_A mol:na length:12  DNA (5'-D(*CP*GP*CP*GP*AP*AP*TP*TP*CP*GP*CP*G)-3')\nCGCGAATTCGCG\n"
    ">1bna_B mol:na length:12  DNA (5'-D(*CP*GP*CP*GP*AP*AP*TP*TP*CP*GP*CP*G)-3')\nCGCGAATTCGCG\n"
)


def uniprot_source(**options: object) -> Source:
    return make_source("uniprot", options)


def run(source: Source, uri: Path | str) -> tuple[list[SourceItem], list[Sample], list[Reject]]:
    done = convert_file(source, str(uri))
    return done.items, done.samples, done.rejects


def sequence_of(sample: Sample) -> str:
    """The sequence the grammar text carries, read back by the grammar's parser."""
    (chain,) = FORMATS["protein"].parse(sample.text).chains
    return chain.sequence


def header_field(description: str, key: str) -> str | None:
    """``KEY=value`` of a UniProt FASTA header, the value running to the next `` XX=`` tag or the end."""
    marker = f" {key}="
    if marker not in description:
        return None
    value = description.split(marker, 1)[1]
    ends = [value.find(f" {tag}=") for tag in ("OS", "OX", "GN", "PE", "SV") if value.find(f" {tag}=") >= 0]
    return value[: min(ends)] if ends else value


def test_uniprotkb_fasta_sp_and_tr_with_ox(data_dir: Path) -> None:
    path = data_dir / HPYLORI
    reference = list(SeqIO.parse(path, "fasta"))
    items, samples, rejects = run(uniprot_source(), path)
    assert len(items) == len(reference) == 1100 and len(samples) + len(rejects) == len(items)
    assert rejects == []
    assert Counter(s.metadata["reviewed"] for s in samples) == {True: 434, False: 666}  # provenance table
    for record, sample in zip(reference, samples, strict=True):
        database, accession, entry_name = record.id.split("|")
        assert sequence_of(sample) == str(record.seq)
        assert sample.source_id == sample.metadata["accession"] == accession
        assert sample.metadata["entry_name"] == entry_name
        assert sample.metadata["reviewed"] is (database == "sp")
        assert sample.metadata["organism"] == header_field(record.description, "OS")
        assert sample.metadata["taxon_id"] == int(header_field(record.description, "OX")) == 85962
        assert sample.metadata.get("gene") == header_field(record.description, "GN")
        assert sample.metadata["protein_existence"] == int(header_field(record.description, "PE"))
    # The dedup key is the sequence: equal keys exactly for equal sequences.
    key_of = {sample.dedup_key: sequence_of(sample) for sample in samples}
    distinct = {str(r.seq) for r in reference}
    assert len(key_of) == len(distinct) and set(key_of.values()) == distinct
    first = samples[0].metadata
    assert (first["accession"], first["entry_name"], first["gene"], first["protein_existence"]) == (
        "O05732", "Y888_HELPY", "HP_0888", 3)
    assert samples[0].text.startswith("<ProteinS>MVLEVKNLSF") and samples[0].text.endswith("<ProteinE>")
    unknown = [s for s in samples if "X" in sequence_of(s)]
    assert unknown and sum(sequence_of(s).count("X") for s in unknown) == 13  # X kept as the unknown residue


def test_old_style_fasta_without_ox_agrees_with_the_flat_file(data_dir: Path) -> None:
    """The same eight Swiss-Prot entries as FASTA (pre-2017 headers, no OX=) and as a flat file."""
    _, fasta, fasta_rejects = run(uniprot_source(), data_dir / OLD_STYLE)
    _, flat, flat_rejects = run(uniprot_source(), data_dir / SWISS_DAT)
    assert fasta_rejects == flat_rejects == [] and len(fasta) == len(flat) == 8
    for record, sample in zip(SeqIO.parse(data_dir / OLD_STYLE, "fasta"), fasta, strict=True):
        assert sequence_of(sample) == str(record.seq)
        assert "taxon_id" not in sample.metadata
        assert sample.metadata["organism"] == header_field(record.description, "OS")
    for from_fasta, from_flat in zip(fasta, flat, strict=True):
        assert from_fasta.source_id == from_flat.source_id
        assert from_fasta.dedup_key == from_flat.dedup_key
        for key in ("accession", "entry_name", "reviewed", "description", "gene", "protein_existence"):
            assert from_fasta.metadata.get(key) == from_flat.metadata.get(key), (from_fasta.source_id, key)


@pytest.mark.parametrize("path", [SWISS_DAT, STORE_DAT])
def test_flat_files_match_biopython_swiss(data_dir: Path, path: str) -> None:
    reference = list(SeqIO.parse(data_dir / path, "swiss"))
    items, samples, rejects = run(uniprot_source(), data_dir / path)
    assert len(items) == len(samples) == len(reference) and rejects == []
    for record, sample in zip(reference, samples, strict=True):
        assert sequence_of(sample) == str(record.seq)
        assert sample.source_id == sample.metadata["accession"] == record.id
        assert sample.metadata["entry_name"] == record.name
        assert sample.metadata["taxon_id"] == int(record.annotations["ncbi_taxid"][0])
        assert sample.metadata["protein_existence"] == record.annotations["protein_existence"]
        assert sample.metadata["organism"] == record.annotations["organism"].rstrip(".")
    reviewed = [s.metadata["reviewed"] for s in samples]
    id_lines = [line.split() for line in (data_dir / path).read_text().splitlines() if line.startswith("ID   ")]
    assert reviewed == [words[2] == "Reviewed;" for words in id_lines]
    if path == STORE_DAT:  # the ID lines read by eye: 2 Reviewed, 4 Unreviewed
        assert Counter(reviewed) == {True: 2, False: 4}
        assert [s.metadata["entry_name"] for s in samples][:4] == [
            "A0A021WW32_DROME", "A0A023GRW4_DROME", "A0A024A2C9_HAEIF", "14310-1_ARATH"]
        assert samples[0].metadata["gene"] == "vtd" and samples[3].source_id == "P48347-1"
    else:
        assert all(reviewed)
        assert [s.metadata.get("gene") for s in samples] == [
            "PLAT", "cbbQ", "cbbQ", "nirQ", "CHDH", None, "GRN", "cef"]


def test_uniref_fasta_cluster_metadata(data_dir: Path) -> None:
    """Headers built in UniRef's documented layout over the first 40 E. coli K-12 records (see PROVENANCE)."""
    reference = list(SeqIO.parse(data_dir / UNIREF, "fasta"))
    items, samples, rejects = run(uniprot_source(), data_dir / UNIREF)
    assert len(items) == len(samples) == len(reference) == 40 and rejects == []
    for index, (record, sample) in enumerate(zip(reference, samples, strict=True)):
        cluster_id = record.id
        fields = dict(word.split("=", 1) for word in record.description.split() if "=" in word and
                      word.split("=", 1)[0] in ("n", "TaxID", "RepID"))
        assert sequence_of(sample) == str(record.seq)
        assert sample.source_id == sample.metadata["uniref_cluster_id"] == cluster_id
        assert sample.metadata["uniref_cluster_size"] == int(fields["n"]) == index % 7 + 1
        assert sample.metadata["taxon_id"] == int(fields["TaxID"]) == 83333
        assert sample.metadata["entry_name"] == fields["RepID"]
        assert sample.metadata["accession"] == cluster_id.removeprefix("UniRef50_")
        assert sample.metadata["organism"] == "Escherichia coli (strain K12)"
    assert samples[0].metadata["description"] == "Uncharacterized protein YmgJ"


def test_pdb_seqres_keeps_proteins_and_rejects_nucleic_acids(data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "pdb_seqres.txt"
    path.write_bytes((data_dir / SEQRES).read_bytes() + SEQRES_NA.encode())
    reference = list(SeqIO.parse(path, "fasta"))
    items, samples, rejects = run(uniprot_source(), path)
    assert len(items) == len(reference) == 30 == len(samples) + len(rejects)
    assert [(r.locator, r.reason_code) for r in rejects] == [("record 29", "not_protein"), ("record 30", "not_protein")]
    for record, sample in zip(reference, samples, strict=False):
        pdb_id, chain_id = record.id.split("_")
        assert sequence_of(sample) == str(record.seq)
        assert (sample.source_id, sample.metadata["pdb_id"], sample.metadata["chain_id"]) == (record.id, pdb_id,
                                                                                               chain_id)
        assert f"length:{len(record.seq)} " in record.description
    assert samples[1].metadata["description"] == "MYOGLOBIN"
    # The excerpt repeats 10mh_A (record 1 and its place in the sorted file): one dedup key for both.
    copies = [s for s in samples if s.source_id == "10mh_A"]
    assert len(copies) == 2 and copies[0].dedup_key == copies[1].dedup_key
    assert len({s.dedup_key for s in samples}) == len({str(r.seq) for r in reference[:28]})


def test_alphabet_policy_and_length_limits(data_dir: Path, tmp_path: Path) -> None:
    real = str(next(SeqIO.parse(data_dir / OLD_STYLE, "fasta")).seq)[:60]
    cases = {  # header -> (sequence, expected sequence or reject code under the default policy)
        "sec_pyl_unknown": (real[:10] + "U" + real[10:20] + "O" + real[20:30] + "X", None),
        "ambiguous": (real[:10] + "BZJB" + real[10:20], None),
        "lower_case": (real[:10].lower() + real[10:], "non_amino_acid"),
        "stop_codon": (real + "*", "non_amino_acid"),
        "gap": (real[:10] + "-" + real[10:], "non_amino_acid"),
        "digit": (real[:10] + "7" + real[10:], "non_amino_acid"),
        "empty": ("", "empty_sequence"),
    }
    path = tmp_path / "policy.fasta"
    path.write_text("".join(f">{name} test\n{sequence}\n" for name, (sequence, _) in cases.items()))
    items, samples, rejects = run(uniprot_source(), path)
    assert len(items) == len(cases) == len(samples) + len(rejects)
    assert [r.reason_code for r in rejects] == [code for _, code in cases.values() if code]
    kept, ambiguous = samples
    assert sequence_of(kept) == cases["sec_pyl_unknown"][0]  # U, O, X are grammar residues: unchanged
    assert check_sample(kept) == check_sample(ambiguous) == (True, None)  # tokenizer and parser round trip
    assert sequence_of(ambiguous) == real[:10] + "XXXX" + real[10:20]
    assert ambiguous.metadata["ambiguous_residues"] == {"B": 2, "J": 1, "Z": 1}
    assert "'*'" in rejects[1].reason and "'-'" in rejects[2].reason

    _, strict_samples, strict_rejects = run(uniprot_source(ambiguous_residues="reject"), path)
    assert [s.source_id for s in strict_samples] == ["sec_pyl_unknown"]
    assert Counter(r.reason_code for r in strict_rejects)["ambiguous_residue"] == 1

    lengths = [len(s) for s, _ in cases.values()]
    assert lengths[:2] == [33, 24]
    _, long_enough, short_rejects = run(uniprot_source(min_length=25), path)
    assert [s.source_id for s in long_enough] == ["sec_pyl_unknown"]
    assert Counter(r.reason_code for r in short_rejects)["sequence_too_short"] == 1
    _, short_enough, long_rejects = run(uniprot_source(max_length=32), path)
    assert [s.source_id for s in short_enough] == ["ambiguous"]
    assert Counter(r.reason_code for r in long_rejects)["sequence_too_long"] == 1


def test_bad_flat_file_entries_are_rejects_and_the_job_finishes(data_dir: Path, tmp_path: Path) -> None:
    text = (data_dir / SWISS_DAT).read_text()
    entries = [entry + "//\n" for entry in text.split("//\n") if entry.strip()]
    broken = entries[2].replace("Reviewed;", "Reviewd;", 1)  # an ID line Bio.SwissProt refuses
    wrong_length = entries[3].replace(" 260 AA.", " 261 AA.", 1)
    truncated = entries[7][: len(entries[7]) // 2]
    path = tmp_path / "bad.dat"
    path.write_text("".join([*entries[:2], broken, wrong_length, *entries[4:7]]) + truncated)
    items, samples, rejects = run(uniprot_source(), path)
    assert len(items) == 7 and len(samples) == 5 and len(items) + 1 == len(samples) + len(rejects)
    assert [(r.locator, r.stage, r.reason_code) for r in rejects] == [
        ("entry 3", "convert", "invalid_flatfile_entry"),
        ("entry 4", "convert", "length_mismatch"),
        ("entry 8", "read", "truncated_record"),
    ]
    reference = [str(r.seq) for r in SeqIO.parse(data_dir / SWISS_DAT, "swiss")]
    assert [sequence_of(s) for s in samples] == reference[:2] + reference[4:7]


def test_gzip_fsspec_and_file_level_problems(data_dir: Path, tmp_path: Path) -> None:
    plain = (data_dir / OLD_STYLE).read_bytes()
    _, expected, _ = run(uniprot_source(), data_dir / OLD_STYLE)
    compressed = gzip.compress(plain)
    (tmp_path / "records.fasta.gz").write_bytes(compressed)
    with fsspec.open("memory://uniprot/records.fasta.gz", "wb") as handle:
        handle.write(compressed)
    for uri in (tmp_path / "records.fasta.gz", "memory://uniprot/records.fasta.gz"):
        _, samples, rejects = run(uniprot_source(), uri)
        assert rejects == [] and [(s.text, s.metadata) for s in samples] == [(s.text, s.metadata) for s in expected]
    cases = {
        "empty.fasta": (b"", "empty_file"),
        "corrupt.fasta.gz": (compressed[: len(compressed) // 2], "corrupt_gzip"),
        "table.txt": (b"accession,sequence\nP1,MKV\n", "wrong_header"),
    }
    for name, (content, code) in cases.items():
        (tmp_path / name).write_bytes(content)
        _, _, rejects = run(uniprot_source(), tmp_path / name)
        assert [r.reason_code for r in rejects][-1:] == [code], name


def test_roundtrip_report_counts_every_record(data_dir: Path) -> None:
    files = [HPYLORI, OLD_STYLE, SWISS_DAT, STORE_DAT, UNIREF, SEQRES]
    total = sum(len(list(SeqIO.parse(data_dir / f, "swiss" if f.endswith(".dat") else "fasta"))) for f in files)
    report = check_roundtrip("uniprot", [str(data_dir / "uniprot")])
    assert report["files"] == len(files)
    assert report["domains"] == {"protein": {"read": total, "valid": total, "round_trip_ok": total, "rejected": {}}}


def test_uniref_clusters_drive_the_split(data_dir: Path, tmp_path: Path) -> None:
    """Two inputs hold the same 40 UniRef cluster ids with unrelated sequences (the E. coli file, and the same
    headers over the first 40 H. pylori sequences, as a later release with new representatives would): the real
    split stage keeps every cluster in one split although no sequence clustering could join its members."""
    ecoli = list(SeqIO.parse(data_dir / UNIREF, "fasta"))
    hpylori = list(SeqIO.parse(data_dir / HPYLORI, "fasta"))[: len(ecoli)]
    release = tmp_path / "uniref50_next_release.fasta"
    release.write_text("".join(f">{e.description}\n{h.seq}\n" for e, h in zip(ecoli, hpylori, strict=True)))
    cluster_of = {str(r.seq): r.id for r in ecoli} | {str(h.seq): e.id for e, h in zip(ecoli, hpylori, strict=True)}
    assert len(cluster_of) == 2 * len(ecoli)  # 80 distinct sequences: exact dedup keeps them all
    source = uniprot_source()
    items = [entry for path in (data_dir / UNIREF, release) for entry in source.read(str(path))]
    rows = convert_items(source, default_tokenizer(), items).records
    split = assign_splits(SplitConfig(fractions=(0.5, 0.25, 0.25), proteins=ProteinClusterConfig(method="minhash")),
                          pa.Table.from_pylist(rows, schema=SHARD_SCHEMA)).records
    splits_of: dict[str, set[str]] = {}
    for text, group, which in split.select("text", "group", "split").iter_rows():
        (chain,) = FORMATS["protein"].parse(text).chains
        cluster = cluster_of[chain.sequence]  # Biopython's reading of the input, not the source's metadata
        assert group == f"uniref:{cluster}"
        splits_of.setdefault(cluster, set()).add(which)
    assert len(splits_of) == 40 and all(len(s) == 1 for s in splits_of.values())
    assert {s for (s,) in splits_of.values()} == {"train", "valid", "test"}
