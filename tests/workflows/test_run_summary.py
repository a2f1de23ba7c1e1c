"""The run summary names each output the way it opens (issue 14: the HF model as its directory, which
``from_pretrained`` loads, not its config.json)."""

from __future__ import annotations

from workflows.commands import output_lines
from workflows.refs import DatasetRef, FolderRef, TrainedRef


def test_each_output_is_named_as_it_opens(tmp_path):
    results = {
        "export": DatasetRef(str(tmp_path / "datasets"), "demo", "abc123", "export",
                               {"blend": "demo/files/abc123/blend.json"}),
        "trained": TrainedRef(str(tmp_path / "run"), str(tmp_path / "run/checkpoints/iter_0000030"), 30, 5.25,
                              str(tmp_path / "run/metrics.jsonl")),
        "hf_model": FolderRef(str(tmp_path / "hf/x"), "config.json"),
        "evaluated": FolderRef(str(tmp_path / "eval/y"), "curves.json"),
        "report": FolderRef(str(tmp_path / "reports/z"), "index.html"),
    }
    lines = {name: (path, note) for name, path, note in output_lines(results)}
    assert lines["dataset"] == ("demo@abc123", "logos datasets show demo@abc123")
    assert lines["blend"][0] == str(tmp_path / "datasets/demo/files/abc123/blend.json")
    assert lines["checkpoint"] == (str(tmp_path / "run/checkpoints/iter_0000030"), "30 steps, final loss 5.250")
    assert lines["hf_model"][0] == str(tmp_path / "hf/x")  # the directory
    assert lines["eval"][0] == str(tmp_path / "eval/y/results.json")
    assert lines["report"][0] == str(tmp_path / "reports/z/index.html")
