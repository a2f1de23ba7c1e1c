"""One line per workflow stage as it finishes (stage, records in -> out, seconds), or a bar over the
stages on a terminal, written by a Hamilton lifecycle hook so that the stages themselves print nothing.

The counts come from what each stage returns (``workflows.refs``) and, for dataset versions, their
manifests; a stage whose output was found (cache hit or content-addressed output) says ``cached``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from hamilton.lifecycle import NodeExecutionHook

from pipeline.console import interactive
from pipeline.stages import REGISTRY as DATASET_STAGES
from workflows.refs import DatasetRef, FolderRef, ShardsRef, TrainedRef

# The DAG's node names, as a user reads them (one word per stage, the CLI verbs).
LABELS = {"dedup": "dedup", "split": "split", "mix": "mix", "export": "export", "trained": "train",
          "hf_model": "export hf", "evaluated": "eval", "report": "report"}


def _total(counts: dict[str, Any], key: str) -> int:
    return sum(n for split in (counts.get(key) or {}).values() for n in split.values())


def _by_split(counts: dict[str, Any], key: str) -> str:
    return " / ".join(f"{split} {sum(domains.values()):,}" for split, domains in sorted(
        (counts.get(key) or {}).items(), key=lambda item: ("train", "valid", "test").index(item[0])
        if item[0] in ("train", "valid", "test") else 3))


class StageProgress(NodeExecutionHook):
    """Reports each stage of ``stages`` when it ends; ``executed`` says which ones did work this run."""

    def __init__(self, stages: list[str], executed, stream: TextIO | None = None) -> None:
        self.stages, self.executed = set(stages), executed
        self.stream = stream or sys.stderr
        self.started: dict[str, float] = {}
        self.records: dict[str, int] = {}  # records out per stage, the next stage's records in
        self.width = max((len(self.label(s)) for s in stages), default=0)
        self.bar = None
        if interactive(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=len(self.stages), unit="stage", file=self.stream, dynamic_ncols=True, leave=False)

    def run_before_node_execution(self, *, node_name: str, **_: Any) -> None:
        if node_name in self.stages:
            self.started[node_name] = time.perf_counter()
            if self.bar is not None:
                self.bar.set_description(LABELS.get(node_name, node_name.removesuffix("_shards")))

    def run_after_node_execution(self, *, node_name: str, result: Any = None, success: bool = True,
                                 **_: Any) -> None:
        if node_name not in self.stages or not success or result is None:
            return
        if node_name not in self.executed():
            timing = "cached"
        elif node_name in self.started:
            timing = f"{time.perf_counter() - self.started[node_name]:.1f} s"
        else:
            timing = "ran on Ray"  # report_finished: no start time on this side
        line = f"{self.label(node_name):{self.width}s}  {self.describe(node_name, result)}  [{timing}]"
        if self.bar is not None:
            self.bar.write(line)
            self.bar.update(1)
        else:
            print(line, file=self.stream, flush=True)

    def report_finished(self, results: dict[str, Any]) -> None:
        """Lines for stages that ran elsewhere: Hamilton's Ray adapter runs a node's lifecycle hooks inside its
        Ray task (they would have to be pickled with the terminal stream and print on a worker), so with
        ``executor: ray`` the lines are written here, in DAG order, once the stages are done (no seconds)."""
        for node_name, result in results.items():
            self.started.pop(node_name, None)
            self.run_after_node_execution(node_name=node_name, result=result)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    @staticmethod
    def label(node_name: str) -> str:
        if node_name.endswith("_shards"):
            return f"ingest {node_name.removesuffix('_shards')}"
        return LABELS.get(node_name, node_name)

    def describe(self, node_name: str, result: Any) -> str:
        """Records in -> out and what came out, from the stage's descriptor."""
        if isinstance(result, ShardsRef):
            items = result.items or {}
            self.records[node_name] = result.records
            return (f"{items.get('read', 0):,} items -> {result.records:,} records "
                    f"({items.get('rejected', 0):,} rejected)")
        if isinstance(result, DatasetRef):
            return self._dataset(node_name, result)
        if isinstance(result, TrainedRef):
            loss = f", final loss {result.final_loss:.3f}" if result.final_loss is not None else ""
            return f"{result.steps} steps{loss} -> {result.checkpoint}"
        if isinstance(result, FolderRef):
            return f"-> {result.path if result.main_file == 'config.json' else Path(result.path) / result.main_file}"
        return ""

    def _dataset(self, node_name: str, result: DatasetRef) -> str:
        from pipeline.versions import DatasetStore

        counts = DatasetStore(result.store_root).manifest(result.ref).counts
        records = _total(counts, "records")
        before = sum(n for stage, n in self.records.items() if stage.endswith("_shards")) \
            if node_name == "dedup" else self.records.get(_UPSTREAM.get(node_name, ""))
        self.records[node_name] = records
        moved = f"{before:,} -> {records:,} records" if before is not None else f"{records:,} records"
        if node_name == "dedup":
            duplicates = counts.get("duplicates") or {}
            return f"{moved} ({duplicates.get('exact', 0):,} exact, {duplicates.get('near', 0):,} near duplicates)" \
                   f" -> {result.ref}"
        if node_name == "split":
            return f"{moved}: {_by_split(counts, 'records')} -> {result.ref}"
        if node_name == "export":
            tokens = _total(counts, "tokens")
            return f"{moved}, {tokens:,} tokens -> {result.blend_path()}"
        return f"{moved} -> {result.ref}"


_UPSTREAM = {s.name: s.upstream for s in DATASET_STAGES.values() if s.upstream in DATASET_STAGES}
