"""``logos eval``: generate on a dataset version's test split, score, write one results JSON.

The results name the model (and the checkpoint it was exported from), the dataset version and its
tokenizer, the generation engine and sampling settings, and for each task its settings, every metric
with the count it is averaged over, what was skipped and why, and the predictions file (LOGOS's output
layout, ``{"id", "sample", "sequence", "groundtruth"}``), which ``logos eval score`` reads back to the
same metrics.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training.evaluation.generate import SamplingSettings
from training.evaluation.predictions import RESULTS_FORMAT, write_predictions
from training.evaluation.references import TrainReference, test_records
from training.evaluation.tasks import PERPLEXITY, TASKS, EvalError, EvalTask, build_items, check_tasks, extract_answer

RESULTS_FILE = "results.json"
CURVES_FILE = "curves.json"  # metrics per checkpoint step of a training run
ENGINES = ("auto", "transformers", "vllm")


@dataclass
class EvalConfig:
    """What ``logos eval`` runs; also the workflow's ``eval:`` section."""

    tasks: list[str] | None = None  # task names (default: all, see training.evaluation.tasks.TASK_NAMES)
    limit: int | None = None  # prompts per task; records per (domain, task) for perplexity; None: all
    samples: int = 1  # generated sequences per prompt
    max_new_tokens: int = 256
    temperature: float = 1.2  # 0: greedy
    top_p: float = 0.9
    repetition_penalty: float = 1.05
    batch_size: int = 8
    seed: int = 1234
    engine: str = "auto"  # auto (vLLM when installed and a GPU is present), transformers, vllm
    every_checkpoint: bool = False  # a training run: also evaluate each checkpoint (metric-vs-step curves)

    def __post_init__(self) -> None:
        check_tasks(self.tasks)
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit}")
        if self.samples < 1 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("samples, max_new_tokens and batch_size must be at least 1")
        if self.temperature == 0 and self.samples != 1:
            raise ValueError("temperature 0 (greedy) gives one sequence per prompt: use samples 1")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")

    def sampling(self) -> SamplingSettings:
        return SamplingSettings(self.samples, self.temperature, self.top_p, self.repetition_penalty,
                                self.max_new_tokens, self.batch_size, self.seed)


def resolve_model(model: str | Path, out: Path, manifest: Any) -> tuple[Path, str | None, str]:
    """(HF export directory, checkpoint it was exported from or None, tokenizer hash). A training run
    directory, its ``checkpoints/`` or one ``iter_*`` directory is exported on the fly to ``out/model``,
    after its tokenizer is checked against the dataset's (a mismatch writes nothing)."""
    path = Path(model)
    if is_hf_export(path):
        return path, None, check_tokenizer(path, manifest)
    from training.checkpoint import TOKENIZER_DIR, CheckpointError, find_checkpoint

    root = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    try:
        ref = find_checkpoint(root) if root.is_dir() else None
    except CheckpointError as exc:
        raise EvalError(f"model {model}: {exc}") from None
    if ref is None:
        raise EvalError(f"model {model}: neither an HF export (no config.json) nor a training checkpoint directory")
    tokenizer_hash = check_tokenizer(ref.path.parent / TOKENIZER_DIR, manifest)
    from training.hf_export import export_hf

    try:
        return export_hf(ref.path, out / "model"), str(ref.path), tokenizer_hash
    except CheckpointError as exc:
        raise EvalError(f"model {model}: {exc}") from None


def is_hf_export(path: Path) -> bool:
    """A transformers model folder: a config.json naming a model type (a training run has a config.json too)."""
    try:
        return "model_type" in json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False


def model_tokenizer_hash(model_dir: Path) -> str | None:
    """The logos tokenizer hash an export carries (``load_tokenizer`` when available, else the
    ``logos_grammar_hash`` of its tokenizer_config.json)."""
    try:
        from grammar.tokenizer import load_tokenizer  # issue 9: reads either tokenizer kind
    except ImportError:
        load_tokenizer = None
    if load_tokenizer is not None:
        try:
            return load_tokenizer(model_dir).content_hash
        except Exception:  # an export without the new metadata: fall back to the config key
            pass
    config = model_dir / "tokenizer_config.json"
    if config.is_file():
        return json.loads(config.read_text()).get("logos_grammar_hash")
    return None


def check_tokenizer(model_dir: Path, manifest: Any) -> str:
    from grammar.tokenizer import TokenizerMismatch, check_same_tokenizer

    found = model_tokenizer_hash(model_dir)
    if found is None:
        raise EvalError(f"model {model_dir}: its tokenizer carries no logos tokenizer hash (not a logos export?)")
    try:
        check_same_tokenizer(found, manifest.tokenizer_hash, first=f"model {model_dir}", second=manifest.ref)
    except TokenizerMismatch as exc:
        raise EvalError(f"{exc}; evaluate on a dataset tokenized like the model") from None
    return found


def write_json(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(value, indent=1, default=str))
    os.replace(temporary, path)
    return path


def evaluate(model: str | Path, dataset: str, config: EvalConfig, out: str | Path, store: Any,
             generator: Any = None) -> dict[str, Any]:
    """Run every configured task, write ``out/results.json`` and ``out/predictions/<task>.jsonl``."""
    from pipeline.versions.manifest import code_version
    from training.evaluation.generate import make_generator

    out = Path(out)
    tasks = check_tasks(config.tasks)
    manifest, records = test_records(store, dataset)
    model_dir, exported_from, tokenizer_hash = resolve_model(model, out, manifest)
    generator = generator or make_generator(model_dir, config.engine, config.seed)
    train = TrainReference(store, manifest)
    results: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "model": {"path": str(model_dir), "exported_from": exported_from, "tokenizer_hash": tokenizer_hash},
        "dataset": {"ref": manifest.ref, "tokenizer_hash": manifest.tokenizer_hash, "test_records": records.height},
        "generation": {"engine": generator.engine, **config.sampling().as_dict()},
        "config": asdict(config),
        "tasks": {},
    }
    for name in tasks:
        if name == PERPLEXITY:
            results["tasks"][name] = run_perplexity(records, generator, config)
        else:
            results["tasks"][name] = run_task(TASKS[name], records, generator, config, train, out, manifest.ref)
    write_json(out / RESULTS_FILE, results)
    return results


def run_checkpoints(run: str | Path) -> list[tuple[int, Path]]:
    """(step, directory) of every checkpoint of a training run (or its checkpoints/ root), by step."""
    from training.checkpoint import META_FILE

    run = Path(run)
    root = run / "checkpoints" if (run / "checkpoints").is_dir() else run
    found = [(int(json.loads((d / META_FILE).read_text())["step"]), d)
             for d in root.glob("iter_*") if (d / META_FILE).is_file()]
    if not found:
        raise EvalError(f"model {run}: no training checkpoints (iter_* directories) to evaluate step by step")
    return sorted(found)


def evaluate_checkpoints(run: str | Path, dataset: str, config: EvalConfig, out: str | Path, store: Any,
                         known: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Evaluate each checkpoint of a run into ``out/steps/step_<N>/`` and write ``out/curves.json`` (every
    metric per step; ``out/results.json`` is the last checkpoint's unless present). Each on-the-fly export is
    deleted once evaluated (one model on disk at a time); ``known`` maps a checkpoint directory to results
    already computed for it (e.g. the final export)."""
    import shutil

    out = Path(out)
    steps = []
    for step, checkpoint in run_checkpoints(run):
        folder = out / "steps" / f"step_{step:07d}"
        results = (known or {}).get(str(checkpoint))
        if results is None and (folder / RESULTS_FILE).is_file():
            results = json.loads((folder / RESULTS_FILE).read_text())
        if results is None:
            results = evaluate(checkpoint, dataset, config, folder, store)
            shutil.rmtree(folder / "model", ignore_errors=True)
        steps.append({"step": step, "checkpoint": str(checkpoint),
                      "metrics": {f"{task}.{name}": value for task, name, value, _ in metric_rows(results)}})
    curves = {"format": RESULTS_FORMAT, "run": str(run), "dataset": dataset, "steps": steps}
    if not (out / RESULTS_FILE).is_file():  # the run's results: its last checkpoint's
        write_json(out / RESULTS_FILE, results)
    write_json(out / CURVES_FILE, curves)
    return curves


def run_task(task: EvalTask, records: Any, generator: Any, config: EvalConfig, train: TrainReference, out: Path,
             ref: str) -> dict[str, Any]:
    from training.evaluation.scoring import docking_skipped_reason, score_answers

    items = build_items(task, records, config.limit)
    settings = {"prompts": len(items), "samples": config.samples, "stop_token": task.end_tag or "eos",
                "record_task": task.record_task, "prompt_example": items[0].prompt[:200] if items else None}
    if not items:
        what = f"task {task.record_task!r}" if task.record_task else f"domain {task.domain!r}"
        return {"settings": settings, "metrics": {}, "skipped": [{"what": "task", "reason":
                f"no test records of {what} in {ref}"}]}
    generation = generator.generate([i.prompt for i in items], task.end_tag, config.sampling())
    predictions = out / "predictions" / f"{task.name}.jsonl"
    write_predictions(predictions, items, generation.sequences)
    scored = [(item.reference, [extract_answer(task, s) for s in sequences])
              for item, sequences in zip(items, generation.sequences, strict=True)]
    entry: dict[str, Any] = {
        "settings": settings,
        "metrics": score_answers(task.name, scored, train),
        "generation": {"new_tokens": generation.new_tokens, "seconds": round(generation.seconds, 3),
                       "tokens_per_second": round(generation.new_tokens / generation.seconds, 1)
                       if generation.seconds else None},
        "predictions": str(predictions.relative_to(out)),
        "skipped": [],
    }
    if task.name == "ligand_design":
        entry["skipped"].append({"what": "vina_score", "reason": docking_skipped_reason()})
    return entry


def run_perplexity(records: Any, generator: Any, config: EvalConfig) -> dict[str, Any]:
    """Perplexity per (domain, task) over whole test records (prefix + text + eos, as trained)."""
    import polars as pl

    from training.evaluation.scoring import perplexity

    rows = records.sort("content_id")
    if config.limit is not None:
        rows = rows.with_columns(n=pl.int_range(pl.len()).over("domain", "task")).filter(pl.col("n") < config.limit)
    keys = [f"{d}/{t}" for d, t in rows.select("domain", "task").iter_rows()]
    scores = generator.nll(rows["text"].to_list(), config.batch_size)
    totals: dict[str, list[float]] = {}
    for key, (nll, tokens) in zip(keys, scores, strict=True):
        total = totals.setdefault(key, [0.0, 0, 0])
        total[0] += nll
        total[1] += tokens
        total[2] += 1
    metrics = {key: perplexity(nll, int(tokens)) | {"records": int(n)}
               for key, (nll, tokens, n) in sorted(totals.items())}
    overall = [sum(v[0] for v in totals.values()), int(sum(v[1] for v in totals.values()))]
    metrics["all"] = perplexity(*overall) | {"records": len(keys)}
    limit = generator.max_positions or 1 << 62
    truncated = sum(len(generator.encode_prompt(t)) + 1 > limit for t in rows["text"].to_list())
    return {"settings": {"records": len(keys), "limit_per_domain_task": config.limit,
                         "max_positions": generator.max_positions, "records_cut_to_context": truncated},
            "metrics": metrics, "skipped": []}


def metric_rows(results: dict[str, Any]) -> list[tuple[str, str, Any, int]]:
    """(task, metric, value, count) rows of a results JSON, for tables."""
    rows = []
    for task, entry in results.get("tasks", {}).items():
        for name, value in entry.get("metrics", {}).items():
            rows.append((task, name, value.get("value"), value.get("count")))
    return rows
