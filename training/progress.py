"""Training progress on the launcher's terminal: step, loss and tokens/s at the logging interval.

The ranks already write every logged step to ``<run_dir>/metrics.jsonl`` (rank 0); the launcher follows
that file instead of relaying the ranks' own output, so the lines look the same for local ranks and Ray
Train workers, carry no ``[rank]:`` prefixes, and the ranks' stderr (library warnings) can stay in
``<run_dir>/logs`` unless ``logos -v``. On a terminal the steps drive one tqdm bar; elsewhere (a log
file, CI) each logged step is one line.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from pipeline.console import interactive

POLL_S = 0.5


def step_line(record: dict[str, Any], total: int) -> str:
    """``train step 15/30  loss 3.214  4,210 tokens/s`` (also the valid losses when the record is an eval)."""
    if record.get("kind") == "valid":
        losses = ", ".join(f"{d} {v:.3f}" for d, v in sorted((record.get("valid_loss") or {}).items()))
        return f"valid step {record['step']}/{total}  loss {record.get('valid_loss_weighted', float('nan')):.3f}" \
               f"  ({losses})"
    loss = record.get("loss")
    rate = record.get("tokens_per_s")
    return (f"train step {record['step']}/{total}  loss {loss:.3f}" if loss is not None else
            f"train step {record['step']}/{total}  loss n/a") + (f"  {rate:,.0f} tokens/s" if rate else "")


@contextmanager
def follow_metrics(metrics_path: str | Path, total_steps: int, stream: TextIO | None = None) -> Iterator[None]:
    """While the body runs (the ranks train), show each new train/valid record of ``metrics_path``."""
    stream = stream or sys.stderr
    path = Path(metrics_path)
    offset = path.stat().st_size if path.is_file() else 0  # a resumed run appends: show only the new steps
    done = threading.Event()
    bar = None
    if interactive(stream):
        from tqdm import tqdm

        bar = tqdm(total=total_steps, unit="step", desc="train", file=stream, dynamic_ncols=True, leave=True)

    def show(record: dict[str, Any]) -> None:
        if bar is None:
            print(step_line(record, total_steps), file=stream, flush=True)
        elif record.get("kind") == "train":
            bar.n = record["step"]
            rate, loss = record.get("tokens_per_s"), record.get("loss")
            text = (f"loss {loss:.3f}" if loss is not None else "") + (f", {rate:,.0f} tok/s" if rate else "")
            bar.set_postfix_str(text)
        elif record.get("kind") == "valid":
            bar.write(step_line(record, total_steps))

    def read_new() -> None:
        nonlocal offset
        if not path.is_file():
            return
        with path.open() as handle:
            handle.seek(offset)
            while (line := handle.readline()).endswith("\n"):
                offset += len(line.encode())
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("kind") in ("train", "valid"):
                    show(record)

    def follow() -> None:
        while not done.wait(POLL_S):
            read_new()

    thread = threading.Thread(target=follow, name="metrics-follower", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        read_new()
        if bar is not None:
            bar.close()
