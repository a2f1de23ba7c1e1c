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
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training.evaluation.generate import SamplingSettings
from training.evaluation.tasks import (
    PERPLEXITY,
    TASKS,
    EvalError,
    EvalTask,
    Item,
    build_items,
    check_tasks,
    extract_answer,
    logos_input_row,
)

RESULTS_FILE = "results.json"
CURVES_FILE = "curves.json"  # metrics per checkpoint step of a training run
RESULTS_FORMAT = "logos-eval/1"
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


def test_records(store: Any, ref: str) -> tuple[Any, Any]:
    """(manifest, test-split records) of a dataset version; a clear error when it has no test split."""
    import polars as pl

    from pipeline.versions.store import DatasetNotFound

    try:
        manifest = store.manifest(ref)
    except (DatasetNotFound, ValueError) as exc:
        raise EvalError(str(exc)) from None
    records = store.scan(manifest)
    if "split" not in records.collect_schema().names():
        raise EvalError(f"{manifest.ref} has no test split: it is not a split dataset (run `logos split`)")
    test = (records.filter(pl.col("split") == "test")
            .select("content_id", "source_id", "domain", "task", "text").collect())
    if test.height == 0:
        raise EvalError(f"{manifest.ref} has no test split: no record is assigned to 'test'")
    return manifest, test


class TrainReference:
    """The training split, for novelty: canonical molecules and crystals by reduced formula, read lazily."""

    def __init__(self, store: Any, manifest: Any) -> None:
        self.store, self.manifest = store, manifest
        self._molecules: set[str] | None = None
        self._texts: dict[str, list[str]] | None = None
        self._crystals: dict[str, list[Any]] = {}

    def _train(self, domains: tuple[str, ...]) -> Any:
        import polars as pl

        return (self.store.scan(self.manifest)
                .filter((pl.col("split") == "train") & pl.col("domain").is_in(list(domains)))
                .select("domain", "task", "text").collect())

    def molecules(self) -> set[str]:
        """Molecules and complex ligands of the train split. Records store RDKit canonical SMILES
        (``grammar.molecule``), the form ``scoring.canonical_smiles`` gives generated molecules."""
        if self._molecules is None:
            from training.evaluation.tasks import molecule_blocks

            texts = self._train(("molecule", "complex"))["text"].to_list()
            self._molecules = {smiles for text in texts for smiles in molecule_blocks(text)}
        return self._molecules

    def _material_texts(self) -> dict[str, list[str]]:
        if self._texts is None:
            from training.evaluation.scoring import material_header_formula

            self._texts = {}
            for task, text in self._train(("material",)).select("task", "text").iter_rows():
                formula = material_header_formula(text) if task == "material" else None
                if formula is not None:
                    self._texts.setdefault(formula, []).append(text)
        return self._texts

    def crystals(self, reduced_formula: str) -> list[Any]:
        """Train crystals of one reduced formula, decoded on first use."""
        if reduced_formula not in self._crystals:
            from grammar.material import parse_crystal

            self._crystals[reduced_formula] = [
                parse_crystal(t) for t in self._material_texts().get(reduced_formula, [])]
        return self._crystals[reduced_formula]


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
    found = model_tokenizer_hash(model_dir)
    if found is None:
        raise EvalError(f"model {model_dir}: its tokenizer carries no logos tokenizer hash (not a logos export?)")
    if found != manifest.tokenizer_hash:
        raise EvalError(f"model {model_dir}: tokenizer {found} is not the tokenizer of {manifest.ref} "
                        f"({manifest.tokenizer_hash}); evaluate on a dataset tokenized like the model")
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


def write_predictions(path: Path, items: list[Item], sequences: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        for item, samples in zip(items, sequences, strict=True):
            for k, sequence in enumerate(samples):
                row = {"id": item.id, "sample": k, "sequence": sequence, "groundtruth": item.reference}
                handle.write(json.dumps(row) + "\n")


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
    truncated = sum(len(generator.document_ids(t)) >= (generator.max_positions or 1 << 62)
                    for t in rows["text"].to_list())
    return {"settings": {"records": len(keys), "limit_per_domain_task": config.limit,
                         "max_positions": generator.max_positions, "records_cut_to_context": truncated},
            "metrics": metrics, "skipped": []}


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


def read_predictions(task: EvalTask, path: Path, references: dict[str, str] | None = None) -> ScoredFile:
    """Group a predictions JSONL into items (by ``id``, else the prompt, else ``groundtruth``; unconditional
    tasks: one item per line). A line that is not a JSON object with a string ``sequence``/``text`` is an
    invalid prediction of its item (or of an item of its own), never dropped; blank lines are counted. A line
    without ``groundtruth`` takes it from ``references`` by id or prompt."""
    scored = ScoredFile()
    groups: dict[Any, tuple[str | None, list[str | None]]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            scored.blank += 1
            continue
        scored.lines += 1
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict):
            scored.malformed += 1
            groups[("line", number)] = (None, [None])
            continue
        sequence = row.get("sequence", row.get("text"))
        reference = row.get("groundtruth") if isinstance(row.get("groundtruth"), str) else None
        if not isinstance(sequence, str):
            scored.malformed += 1
            answer = None
        else:
            answer = extract_answer(task, sequence)
        if task.record_task is None:
            key: Any = ("line", number)
        else:
            prompt = next((row[k] for k in PROMPT_KEYS if isinstance(row.get(k), str) and k != "text"), None)
            if reference is None and references:
                reference = references.get(str(row.get("id"))) or (references.get(prompt) if prompt else None)
            key = row.get("id") or prompt or reference or ("line", number)
            key = json.dumps(key, default=str) if not isinstance(key, str | tuple) else key
        if key not in groups:
            groups[key] = (reference, [])
            scored.without_groundtruth += task.record_task is not None and reference is None
        groups[key][1].append(answer)
    scored.items = list(groups.values())
    return scored


def score_file(task_name: str, predictions: str | Path, store: Any = None, dataset: str | None = None,
               references: str | Path | None = None) -> dict:
    """Metrics of a predictions JSONL (``logos eval``'s or LOGOS's script output); novelty needs ``dataset``;
    ``references``: an input JSONL whose groundtruth fills lines that lack one."""
    from training.evaluation.scoring import score_answers

    if task_name not in TASKS:
        raise EvalError(f"unknown task {task_name!r} for scoring (known: {', '.join(TASKS)})")
    path = Path(predictions)
    if not path.is_file():
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
                   "items": len(scored.items), "items_without_groundtruth": scored.without_groundtruth},
        "metrics": score_answers(task_name, scored.items, train),
        "skipped": skipped,
    }


def export_prompts(store: Any, dataset: str, out: str | Path, tasks: list[str] | None = None,
                   limit: int | None = None) -> dict[str, Any]:
    """The test split in LOGOS's input JSONL layouts, one file per conditional task."""
    _, records = test_records(store, dataset)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {}
    skipped = []
    for name in check_tasks(tasks):
        task = TASKS.get(name)
        if task is None or task.record_task is None:
            skipped.append({"what": name, "reason": "no input file: LOGOS drives it with a fixed prompt"
                            if task else "not a generation task"})
            continue
        items = build_items(task, records, limit)
        path = out / f"{name}.jsonl"
        with path.open("w") as handle:
            for item in items:
                handle.write(json.dumps(logos_input_row(task, item)) + "\n")
        written[name] = {"file": str(path), "lines": len(items)}
    return {"dataset": dataset, "format": "logos", "files": written, "skipped": skipped}


def metric_rows(results: dict[str, Any]) -> list[tuple[str, str, Any, int]]:
    """(task, metric, value, count) rows of a results JSON, for tables."""
    rows = []
    for task, entry in results.get("tasks", {}).items():
        for name, value in entry.get("metrics", {}).items():
            rows.append((task, name, value.get("value"), value.get("count")))
    return rows
