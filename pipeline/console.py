"""What a ``logos`` command shows on the terminal: our progress and results, not the libraries' chatter.

By default (``configure(verbose=False)``, set by the ``logos`` entry point before anything heavy is
imported) third-party warnings, Ray's and Ray Data's INFO/progress logs, Hamilton's error banner and the
training ranks' stderr stay off the terminal; ``logos -v`` shows all of them. Quiet is set through the
environment as well as in this process, because the chatter comes from other processes too: local Ray
workers and training ranks inherit the environment, and ``ray_runtime_env`` hands the same variables to
the workers of a joined cluster. Nothing is lost: Ray keeps its logs in its session directory and the
training ranks theirs in ``<run_dir>/logs``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import time
import warnings
from pathlib import Path

VERBOSE_ENV = "LOGOS_VERBOSE"  # "1": show everything (``logos -v``); inherited by ranks and workers

# Environment for every process of a quiet run. RAY_DATA_LOG_LEVEL keeps Ray Data's INFO progress lines
# ("Total Progress: 11/12 ...", every 10 s on a non-TTY) off the console; its warnings about its own
# tuning are noise to a user too. (RAY_BACKEND_LOG_LEVEL cannot quiet Ray's C++ lines: setting it prints
# a line of its own; see ``divert_native_stderr``.)
QUIET_ENV = {
    "PYTHONWARNINGS": "ignore",
    "RAY_DATA_LOG_LEVEL": "ERROR",
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}
QUIET_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune", "hamilton", "torch", "torch.distributed",
                 "megatron", "megatron.core", "transformers", "matplotlib", "fsspec", "s3fs", "botocore",
                 "urllib3", "py.warnings", "filelock", "numexpr")


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


def configure(show_all: bool = False, divert: bool = False) -> None:
    """Quiet (default) or verbose, for this process and the processes it starts; ``divert``: also
    ``divert_native_stderr`` (the ``logos`` command does, a caller inside pytest must not)."""
    os.environ[VERBOSE_ENV] = "1" if show_all else "0"
    if show_all:
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    quiet_here()
    if divert:
        divert_native_stderr()


def divert_native_stderr() -> Path | None:
    """Send what native code and child processes write to file descriptor 2 to a log file, while
    Python's ``sys.stderr`` (our progress lines, errors, tracebacks) keeps the terminal.

    Ray's C++ core worker in this process prints some notices straight to fd 2, which no Python logging
    setting reaches: e.g. "Actor ... has constructor arguments in the object store" for every Ray Data
    actor pool (a known Ray Data false alarm, ray-project/ray#57733). Child processes (Ray's, the
    training ranks, mmseqs) inherit the log file too; they keep their own logs as well.
    Returns the log file, or None when stderr is not a real file descriptor (nothing to divert).
    """
    import tempfile

    try:
        sys.stderr.flush()
        original = os.dup(2)
    except (OSError, ValueError, AttributeError):
        return None
    folder = Path(tempfile.gettempdir()) / "logos"
    folder.mkdir(parents=True, exist_ok=True)
    prune_native_logs(folder)
    path = folder / f"stderr-{os.getpid()}.log"
    atexit.register(_remove_if_empty, path)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 2)
    sys.stderr = open(original, "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",  # noqa: SIM115
                      errors="backslashreplace")
    return path


NATIVE_LOG_DAYS = 7  # diverted stderr logs older than this are removed by the next ``logos`` command


def prune_native_logs(folder: Path, days: float = NATIVE_LOG_DAYS) -> None:
    """Drop diverted-stderr logs older than ``days``: they explain a recent failure, not an old one."""
    cutoff = time.time() - days * 86400
    for old in folder.glob("stderr-*.log"):
        with contextlib.suppress(OSError):
            if old.stat().st_mtime < cutoff:
                old.unlink()


def _remove_if_empty(path: Path) -> None:
    """At exit: a run whose native code printed nothing leaves no log behind."""
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            path.unlink()


def quiet_here() -> None:
    """Silence warnings and third-party loggers in this process (also called by training ranks)."""
    if verbose():
        return
    warnings.filterwarnings("ignore")
    logging.captureWarnings(True)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("hamilton").setLevel(logging.CRITICAL)  # its error banner repeats our one-line error


def ray_logging_level() -> int:
    """``ray.init(logging_level=...)``: warnings (e.g. token authentication notes) only with ``-v``."""
    return logging.INFO if verbose() else logging.ERROR


def ray_runtime_env(runtime_env: dict | None = None) -> dict | None:
    """``runtime_env`` plus the quiet environment, for the workers of a joined cluster (a local Ray's
    workers inherit it from this process)."""
    if verbose() or "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:  # a submitted job's runtime_env is its own
        return runtime_env
    env_vars = {**{k: os.environ[k] for k in QUIET_ENV if k in os.environ}, VERBOSE_ENV: "0"}
    merged = dict(runtime_env or {})
    merged["env_vars"] = {**env_vars, **(merged.get("env_vars") or {})}
    return merged


def interactive(stream=None) -> bool:
    """A terminal, where progress bars redraw; else (a log file, CI) one line per stage."""
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())
