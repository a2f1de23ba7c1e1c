"""Predictions files: written by ``logos eval`` in LOGOS's output layout, read back (ours or LOGOS's scripts')
and scored by ``logos eval score``. Malformed lines are invalid predictions, never dropped."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.evaluation.references import TrainReference
from training.evaluation.tasks import TASKS, EvalError, EvalTask, Item, extract_answer

RESULTS_FORMAT = "logos-eval/1"


def write_predictions(path: Path, items: list[Item], sequences: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        for item, samples in zip(items, sequences, strict=True):
            for k, sequence in enumerate(samples):
                row = {"id": item.id, "sample": k, "sequence": sequence, "groundtruth": item.reference}
                handle.write(json.dumps(row) + "\n")


PROMPT_KEYS = ("test_input", "text", "protein_pocket_ligand", "prompt")


@dataclass
class ScoredFile:
    items: list[tuple[str | None, list[str | None]]] = field(default_factory=list)
    lines: int = 0
    malformed: int = 0
    blank: int = 0
    without_groundtruth: int = 0


def read_references(task: EvalTask, path: Path) -> dict[str, str]:
    """``groundtruth`` by ``id`` and by prompt from an input JSONL (``logos eval export-prompts``): for outputs
    that do not repeat the groundtruth (LOGOS's binding-site script keeps only the id)."""
    if not path.is_file():
        raise EvalError(f"references file {path}: not found")
    found: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise EvalError(f"references file {path}: line {number} is not JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get("groundtruth"), str):
            raise EvalError(f"references file {path}: line {number} has no groundtruth string")
        for key in (row.get("id"), row.get(task.logos_prompt_key or "text")):
            if isinstance(key, str):
                found[key] = row["groundtruth"]
    return found


def prediction_files(path: Path) -> list[Path]:
    """A predictions JSONL, or a folder of them (LOGOS's retrosynthesis script writes one file per input,
    ``0.jsonl``, ``1.jsonl``, ...: read in numeric order)."""
    if not path.is_dir():
        return [path]
    files = sorted(path.glob("*.jsonl"), key=lambda f: (not f.stem.isdigit(), int(f.stem) if f.stem.isdigit() else 0,
                                                        f.name))
    if not files:
        raise EvalError(f"predictions folder {path}: no *.jsonl files")
    return files


def read_predictions(task: EvalTask, path: Path, references: dict[str, str] | None = None) -> ScoredFile:
    """Group predictions into items (by ``id``, else the prompt, else ``groundtruth``, within one file;
    unconditional tasks: one item per line). A line that is not a JSON object with a string
    ``sequence``/``text`` is an invalid prediction of its item (or of an item of its own), never dropped;
    blank lines are counted. With ``references``, a line without ``groundtruth`` takes it by id or prompt,
    and a ``groundtruth`` that is a known id (LOGOS's binding-site script writes the input's id there) is
    replaced by that id's groundtruth."""
    scored = ScoredFile()
    groups: dict[Any, tuple[str | None, list[str | None]]] = {}
    for file in prediction_files(path):
        for number, line in enumerate(file.read_text().splitlines(), 1):
            if not line.strip():
                scored.blank += 1
                continue
            scored.lines += 1
            where = (file.name, number)
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict):
                scored.malformed += 1
                groups[where] = (None, [None])
                continue
            sequence = row.get("sequence", row.get("text"))
            reference = row.get("groundtruth") if isinstance(row.get("groundtruth"), str) else None
            if not isinstance(sequence, str):
                scored.malformed += 1
                answer = None
            else:
                answer = extract_answer(task, sequence)
            if task.record_task is None:
                key: Any = where
            else:
                prompt = next((row[k] for k in PROMPT_KEYS if isinstance(row.get(k), str) and k != "text"), None)
                if references and reference in references:
                    row.setdefault("id", reference)
                    reference = references[reference]
                if reference is None and references:
                    reference = references.get(str(row.get("id"))) or (references.get(prompt) if prompt else None)
                key = (file.name, json.dumps(row.get("id") or prompt or reference or where, default=str))
            if key not in groups:
                groups[key] = (reference, [])
                scored.without_groundtruth += task.record_task is not None and reference is None
            groups[key][1].append(answer)
    scored.items = list(groups.values())
    return scored


def unreadable_references(task_name: str, items: list[tuple[str | None, list[str | None]]]) -> int:
    """Items whose groundtruth is present but not an answer of the task (e.g. an id: pass --references)."""
    from training.evaluation.scoring import molecule_set, pocket_chains

    read = {"retrosynthesis": molecule_set, "forward_reaction": molecule_set, "pocket_search": pocket_chains}
    reader = read.get(task_name)
    return sum(ref is not None and reader(ref) is None for ref, _ in items) if reader else 0


def score_file(task_name: str, predictions: str | Path, store: Any = None, dataset: str | None = None,
               references: str | Path | None = None) -> dict:
    """Metrics of a predictions JSONL (``logos eval``'s or LOGOS's script output); novelty needs ``dataset``;
    ``references``: an input JSONL whose groundtruth fills lines that lack one."""
    from training.evaluation.scoring import score_answers

    if task_name not in TASKS:
        raise EvalError(f"unknown task {task_name!r} for scoring (known: {', '.join(TASKS)})")
    path = Path(predictions)
    if not path.exists():
        raise EvalError(f"predictions file {path}: not found")
    task = TASKS[task_name]
    scored = read_predictions(task, path, read_references(task, Path(references)) if references else None)
    train, skipped = None, []
    if dataset is not None:
        from pipeline.versions.store import DatasetNotFound

        try:
            train = TrainReference(store, store.manifest(dataset))
        except (DatasetNotFound, ValueError) as exc:
            raise EvalError(str(exc)) from None
    elif task_name in ("ligand_design", "molecule_generation", "material_generation"):
        skipped.append({"what": "novelty", "reason": "no --dataset given to take the train split from"})
    if task_name == "ligand_design":
        from training.evaluation.scoring import docking_skipped_reason

        skipped.append({"what": "vina_score", "reason": docking_skipped_reason()})
    return {
        "format": RESULTS_FORMAT, "task": task_name, "predictions": str(path),
        "dataset": dataset,
        "counts": {"lines": scored.lines, "malformed_lines": scored.malformed, "blank_lines": scored.blank,
                   "items": len(scored.items), "items_without_groundtruth": scored.without_groundtruth,
                   "items_with_unreadable_groundtruth": unreadable_references(task_name, scored.items)},
        "metrics": score_answers(task_name, scored.items, train),
        "skipped": skipped,
    }
