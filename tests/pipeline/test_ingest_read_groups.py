"""The ingest read plan: chunks span the files of a read group, in input order, with per-file accounting.

Why it matters: a PDB entry is one file, so chunks that stopped at file boundaries made one Parquet part per
entry (200k tiny parts at PDB scale, ~20% of an entry's ingest time spent writing its own part).
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

from pipeline.ingest import FILES_PER_READ, read_file_chunks, read_groups
from pipeline.records import Reject, SourceItem

MMCIF = Path(__file__).resolve().parents[1] / "data/pdb/mmcif"


def chunks(files: list[str], chunk_items: int) -> list[tuple[int, int, list]]:
    out = []
    for group in read_groups(files, files_per_read=4):
        batch = {"group_index": [group["group_index"]], "uris": [group["uris"]]}
        for row in read_file_chunks(batch, "pdb", {}, chunk_items):
            out.append((row["group_index"][0], row["chunk_index"][0], pickle.loads(row["items"][0])))
    return out


def test_groups_keep_input_order_and_chunks_span_files(tmp_path: Path) -> None:
    files = [str(MMCIF / n) for n in ("1aki.cif", "1bna.cif", "1k6p.cif", "1l2y.cif", "3o5r.cif", "4i39.cif")]
    assert read_groups(files, files_per_read=4)[1]["group_index"] == 1
    assert len(read_groups(list(map(str, range(2 * FILES_PER_READ + 1))))) == 3
    result = chunks(files, chunk_items=3)
    # 6 one-entry files in groups of 4 and 2: chunks of 3 and 1 in the first group, 2 in the second.
    assert [(g, c, len(items)) for g, c, items in result] == [(0, 0, 3), (0, 1, 1), (1, 0, 2)]
    uris = [item.uri for _, _, items in result for item in items]
    assert uris == files  # part-name order is input order
    assert all(isinstance(item, SourceItem) for _, _, items in result for item in items)


def test_an_empty_and_a_broken_file_are_one_reject_each_in_a_shared_chunk(tmp_path: Path) -> None:
    empty = tmp_path / "empty.cif"
    empty.write_text("")
    broken = tmp_path / "broken.cif.gz"
    broken.write_bytes(gzip.compress((MMCIF / "1aki.cif").read_bytes())[:2000])  # truncated gzip
    files = [str(MMCIF / "1aki.cif"), str(empty), str(broken), str(MMCIF / "1bna.cif")]
    (_, _, items), = chunks(files, chunk_items=16)
    rejects = [i for i in items if isinstance(i, Reject)]
    assert [i.uri for i in items if isinstance(i, SourceItem)] == [files[0], files[3]]
    assert [(r.source_uri, r.stage) for r in rejects] == [(files[1], "read"), (files[2], "read")]
    assert rejects[0].reason_code == "empty_file" and rejects[1].reason_code != "empty_file"
