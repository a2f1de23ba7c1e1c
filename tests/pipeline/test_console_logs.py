"""The diverted-stderr logs of the ``logos`` command do not pile up: an empty one is removed at exit, one
with native output is kept (it explains a failure), and logs older than a week go at the next start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_diverted(tmp_path: Path, native_output: bytes) -> Path:
    script = ("import os; from pipeline.console import divert_native_stderr; "
              f"path = divert_native_stderr(); os.write(2, {native_output!r}); print(path)")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={**os.environ, "TMPDIR": str(tmp_path)})
    assert done.stderr == ""  # fd 2 went to the log
    return Path(done.stdout.strip())


def test_empty_logs_removed_native_output_kept_old_logs_pruned(tmp_path: Path) -> None:
    folder = tmp_path / "logos"
    folder.mkdir()
    old, recent = folder / "stderr-1.log", folder / "stderr-2.log"
    old.write_text("a week-old failure\n")
    recent.write_text("yesterday's failure\n")
    eight_days_ago = time.time() - 8 * 86400
    os.utime(old, (eight_days_ago, eight_days_ago))

    quiet = run_diverted(tmp_path, b"")
    assert quiet.parent == folder and not quiet.exists()
    assert not old.exists() and recent.exists()

    noisy = run_diverted(tmp_path, b"native notice\n")
    assert noisy.read_bytes() == b"native notice\n"
