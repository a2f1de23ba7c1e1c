"""The ``logos`` dataset commands end to end on the real fixture shards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.versions import DatasetStore
from workflows.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_dedup_split_mix_export_and_inspect(shards, tmp_path, capsys):
    store = ["--store", str(tmp_path / "store")]
    code, out, err = run(capsys, "dedup", str(shards.root), "--name", "d", "--source-priority", "smiles", *store)
    assert code == 0 and "registered d@" in err
    counts = json.loads(out)["counts"]
    assert counts["duplicates"]["near"] == 2 and counts["rejects"] == shards.n_rejects

    code, out, err = run(capsys, "dedup", str(shards.root), "--name", "d", "--source-priority", "smiles", *store)
    assert code == 0 and json.loads(out)["state"] == "reused"
    code, out, _ = run(capsys, "dedup", str(shards.root), "--name", "d-stream", "--source-priority", "smiles",
                       "--streaming", "--bucket-rows", "300", *store)
    streamed = json.loads(out)
    assert code == 0 and streamed["counts"] == counts and streamed["state"] == "registered"

    keys = tmp_path / "benchmark.txt"
    items = [row["reactants>reagents>production"] for row in shards.uspto_rows[:30]]
    keys.write_text("# USPTO-50k items\n" + "\n".join(items))
    code, out, _ = run(capsys, "split", "d", "--name", "s", "--protein-clustering", "minhash",
                       "--fractions", "0.8,0.1,0.1", "--exclude", str(keys), "--run-id", "wf-7", *store)
    assert code == 0
    split_counts = json.loads(out)["counts"]
    assert set(split_counts["records"]) == {"train", "valid", "test"} and split_counts["excluded"] > 0

    code, out, err = run(capsys, "mix", "s", "--name", "m", "--weights", "molecule=0.5,reaction=0.4,protein=0.1",
                         "--max-epochs", "3", *store)
    assert code == 0 and "eff. tokens" in err and json.loads(out)["dataset"].startswith("m@")

    code, out, err = run(capsys, "export", "megatron", "m", "--name", "e", *store)
    assert code == 0 and "blend:" in err
    blend_path = err.split("blend: ")[1].split()[0]
    blend = json.loads(Path(blend_path).read_text())
    train = dict(zip(blend["splits"]["train"]["domains"], blend["splits"]["train"]["weights"], strict=True))
    assert set(train) == {"molecule", "reaction", "protein"}

    code, out, _ = run(capsys, "datasets", "list", "--json", *store)
    listed = {row["dataset"].split("@")[0]: row for row in json.loads(out)}
    assert set(listed) == {"d", "d-stream", "s", "m", "e"} and listed["e"]["stage"] == "export"
    assert listed["d"]["dataset"].split("@")[1] == listed["d-stream"]["dataset"].split("@")[1]  # same version id
    code, out, _ = run(capsys, "datasets", "list", *store)
    assert code == 0 and len(out.strip().splitlines()) == 5

    code, out, _ = run(capsys, "datasets", "show", "s", *store)
    manifest = json.loads(out)
    assert manifest["run"] == {"run_id": "wf-7"} and manifest["inputs"][0]["name"] == "d"
    code, out, _ = run(capsys, "datasets", "show", f"s@{manifest['version'][:8]}", *store)
    assert json.loads(out)["version"] == manifest["version"]

    code, out, _ = run(capsys, "datasets", "diff", "d", "s", *store)
    report = json.loads(out)
    excluded = DatasetStore(tmp_path / "store").read(DatasetStore(tmp_path / "store").manifest("s"), "excluded")
    assert report["removed"] == excluded.height and report["added"] == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["datasets", "show", "nope"], "no dataset 'nope'"),
        (["split", "missing-input", "--name", "x"], "neither a dataset"),
        (["mix", "--name", "x", "d", "--weights", "molecule"], "KEY=VALUE"),
    ],
)
def test_errors_are_one_clear_line(tmp_path, capsys, argv, message):
    code, _, err = run(capsys, *argv, "--store", str(tmp_path / "store"))
    assert code == 2
    assert err.startswith("error: ") and message in err


def test_bad_inputs_beside_good_shards_exit_2_for_usage_1_for_failure(shards, tmp_path, capsys):
    """A pattern that matches nothing (a wrong path: usage, exit 2) and a shard that is not Parquet (the input
    is there but cannot be read: a failure, exit 1) are each one line naming the input, beside good shards
    that would otherwise make a version; nothing is registered."""
    store = tmp_path / "store"
    broken = tmp_path / "broken" / "records"
    broken.mkdir(parents=True)
    (broken / "part-0.parquet").write_bytes(b"not parquet at all")
    pattern = str(tmp_path / "nomatch-*" / "records" / "*.parquet")
    for bad, code, words in ((pattern, 2, [pattern, "matches no file"]),
                             (str(broken.parent), 1, ["part-0.parquet", "not a Parquet shard"])):
        got, _, err = run(capsys, "dedup", str(shards.root), bad, "--name", "x", "--store", str(store))
        lines = err.strip().splitlines()
        assert got == code and len(lines) == 1 and lines[0].startswith("error: "), err
        assert all(word in lines[0] for word in words), lines[0]
    assert DatasetStore(store).names() == []


def test_stage_writes_a_version_of_its_input_dataset_without_name(shards, tmp_path, capsys):
    """``logos split mydata`` (as the README writes it) adds a version to ``mydata``; shards need ``--name``."""
    store = ["--store", str(tmp_path / "store")]
    code, _, err = run(capsys, "dedup", str(shards.root), *store)
    assert code == 2 and "--name is required" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run(capsys, "dedup", str(shards.root), "--name", "mydata", "--source-priority", "smiles", *store)
    assert code == 0
    deduped = json.loads(out)["dataset"]
    code, out, _ = run(capsys, "split", "mydata", "--protein-clustering", "minhash", *store)
    assert code == 0
    split = json.loads(out)["dataset"]
    assert split.startswith("mydata@") and split != deduped
    code, _, err = run(capsys, "mix", "nosuchdata", *store)
    assert code == 2 and "'nosuchdata': no dataset of that name" in err and "have: mydata" in err
