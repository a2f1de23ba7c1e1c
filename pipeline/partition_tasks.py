"""A dataset stage's partitions as Ray tasks: submitted, retried when their worker dies, failures named.

Every stage that runs partitions on Ray submits them here (``ordered_results``: split, export, dedup's
kept files) or takes their results here (``partition_result``: dedup's hash buckets, whose tasks are chained
to the file tasks by Ray object references), so the rules are the same for all of them:

- **A worker that dies is retried.** Each task has ``TASK_RETRIES`` retries for system failures (the
  worker process killed by SIGKILL or the OOM killer, its node lost). A partition task is a pure function
  of its inputs, so a retry gives the same result, and the stage's output is unchanged.
- **Beyond the retries, one error naming the stage and the partition** (``PartitionFailed``), raised
  before the stage registers anything: no version, no manifest (the manifest write is the version's
  marker, ``pipeline.versions.store``). The partitions still pending are cancelled.
- **A partition that raises** (a bad record, say) is not retried: the task's own exception is re-raised
  (its one-line message naming the record), chained to Ray's wrapper, which carries the remote traceback.
- Each task is named after the partition function (``ray::<function>`` is its worker's process title), so
  a test or an operator finds the worker of a stage's partitions by the function's name.

A test hook (``FAULT_ENV``), read by the worker before it runs a partition, makes worker death
deterministic: a test must kill a worker *while* it runs a partition, and a partition of the test data
takes milliseconds, so waiting for it with a sleep would be a race. The hook is inert unless the variable
is set; it names partitions, by their task function (a stage may run several kinds of task) and index, and
what happens to them:

    LOGOS_TEST_PARTITION_FAULT="export_partition:0:hold,partition_globals:1:die"   (comma-separated)
    LOGOS_TEST_PARTITION_FAULT_DIR=/some/folder    (markers, on a filesystem the workers' nodes share)

- ``hold``: the first attempt writes ``<dir>/<function>-<partition>.held`` (its pid) and blocks until its
  worker is killed (a test kills it); later attempts find the marker and run normally. If nobody kills it
  within ``HOLD_SECONDS`` it raises, so a test that failed to kill fails instead of hanging.
- ``die``: every attempt ends its worker process at once (``os._exit``), as the OOM killer would; Ray sees
  a worker death each time, and the retries run out.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

TASK_RETRIES = 3
FAULT_ENV = "LOGOS_TEST_PARTITION_FAULT"
FAULT_DIR_ENV = "LOGOS_TEST_PARTITION_FAULT_DIR"
HOLD_SECONDS = 300.0


# What each partition task's worker process is started with. A task holds one CPU (``num_cpus=1``), as Ray
# accounts for it, and Ray caps OpenMP and Arrow to that (``OMP_NUM_THREADS``), but polars sizes its own thread
# pool to every core of the node: N tasks on N cores would run N x N threads, and one worker would already
# spread over the node, so more workers would add little (measured by ``benchmarks/bench_scale.py`` at 1.5M
# MOSES records on 2 cores: split 2 vs 1 workers 1.55x with polars' default pool, 1.68x with one thread).
TASK_RUNTIME_ENV = {"env_vars": {"POLARS_MAX_THREADS": "1"}}


class PartitionFailed(RuntimeError):
    """A partition whose task failed beyond its retries (its worker died each time), stage and partition named."""


def ordered_results(stage: str, function: Callable[..., Any], calls: Iterable[tuple], in_flight: int | None = None,
                    describe: Callable[[int], str] | None = None) -> Iterator[Any]:
    """``function(*call)`` for each call, as Ray tasks on the running Ray, yielded in call order.

    ``in_flight``: at most this many tasks submitted and not yet taken (None: all at once). ``describe``:
    words for partition ``i`` in an error (e.g. its row range), after "partition i"."""
    import ray

    task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES, runtime_env=TASK_RUNTIME_ENV)(run_partition)
    pending: deque[tuple[int, Any]] = deque()
    try:
        for index, call in enumerate(calls):
            pending.append((index, task.options(name=function.__name__).remote(function, stage, index, *call)))
            if in_flight is not None and len(pending) >= in_flight:
                yield partition_result(stage, *pending.popleft(), describe)
        while pending:
            yield partition_result(stage, *pending.popleft(), describe)
    finally:
        for _, ref in pending:  # an error (or a consumer that stopped): the rest would only burn workers
            ray.cancel(ref, force=True)


def segments_label(segments: Sequence[Any]) -> str:
    """A partition of file row ranges (``pipeline.partitions.Segment``: file, offset, rows) in a few words:
    where its rows are, for an error that names it."""
    if not segments:
        return "no rows"
    first, last = segments[0], segments[-1]
    where = f"{first.file.rsplit('/', 1)[-1]} row {first.offset}"
    if len(segments) > 1:
        where += f" to {last.file.rsplit('/', 1)[-1]} row {last.offset + last.rows - 1}"
    return f"{sum(s.rows for s in segments):,} rows, {where}"


def partition_result(stage: str, index: int, ref: Any, describe: Callable[[int], str] | None = None) -> Any:
    """The result of partition ``index``'s task; its own error, or ``PartitionFailed`` when its worker died
    beyond the retries."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # the partition raised: its error (one line), not Ray's wrapper
        raise exc.cause from exc
    except ray.exceptions.RayError as exc:  # the worker died (killed, out of memory, node lost) every attempt
        what = f"partition {index}" + (f" ({describe(index)})" if describe else "")
        reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise PartitionFailed(f"{stage}: {what} failed on {TASK_RETRIES + 1} attempts, its worker died each time "
                              f"({type(exc).__name__}: {reason})") from exc


def run_partition(function: Callable[..., Any], stage: str, index: int, *args: Any) -> Any:
    """What a partition task runs (in the worker): the test hook, then the partition function."""
    fault_point(function.__name__, index)
    return function(*args)


def fault_point(function: str, index: int) -> None:
    """The test hook (module docstring): nothing unless ``FAULT_ENV`` names this partition of ``function``."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    actions = {tuple(item.strip().rsplit(":", 2)[:2]): item.strip().rsplit(":", 1)[1] for item in spec.split(",")
               if item.strip().count(":") >= 2}
    action = actions.get((function, str(index)))
    if action == "die":
        os._exit(1)
    if action == "hold":
        marker = Path(os.environ.get(FAULT_DIR_ENV, ".")) / f"{function}-{index}.held"
        if marker.exists():  # a retry: the held attempt was killed
            return
        written = marker.with_suffix(".tmp")
        written.write_text(str(os.getpid()))
        written.replace(marker)  # whole, at once: a test reads the pid as soon as the marker exists
        deadline = time.monotonic() + HOLD_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.05)
        raise RuntimeError(f"{FAULT_ENV}: {function} partition {index} was held {HOLD_SECONDS:.0f} s, never killed")
    if action is not None:
        raise ValueError(f"{FAULT_ENV}: unknown action {action!r} for {function}:{index} (hold or die)")
