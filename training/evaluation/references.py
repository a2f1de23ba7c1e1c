"""The dataset side of an evaluation: a version's test split (prompts and references) and its train split
(for novelty), and the test split written in LOGOS's input JSONL layouts (``logos eval export-prompts``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.evaluation.tasks import TASKS, EvalError, build_items, check_tasks, logos_input_row


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
