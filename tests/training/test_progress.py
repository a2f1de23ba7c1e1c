"""Training progress on the launcher's terminal: the lines ``follow_metrics`` prints from metrics.jsonl."""

from __future__ import annotations

import io
import json

from training.progress import follow_metrics


def test_each_logged_step_is_one_line_with_step_loss_and_throughput(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(json.dumps({"kind": "train", "step": 3, "loss": 9.0, "tokens_per_s": 10.0}) + "\n")
    out = io.StringIO()  # not a terminal: lines, no bar
    with follow_metrics(metrics, 10, out), metrics.open("a") as handle:  # a resumed run: only the new steps
        handle.write(json.dumps({"kind": "note", "step": 3, "note": "sdpa attention"}) + "\n")
        handle.write(json.dumps({"kind": "train", "step": 5, "loss": 7.25, "tokens_per_s": 4210.4}) + "\n")
        handle.write(json.dumps({"kind": "valid", "step": 5, "valid_loss": {"molecule": 6.5, "protein": 7.0},
                                 "valid_loss_weighted": 6.75}) + "\n")
        handle.write('{"kind": "train", "step": 6, "lo')  # a line being written: not read yet
    assert out.getvalue().splitlines() == [
        "train step 5/10  loss 7.250  4,210 tokens/s",
        "valid step 5/10  loss 6.750  (molecule 6.500, protein 7.000)",
    ]
