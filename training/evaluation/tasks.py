"""Evaluation tasks: prompts and references cut from a dataset version's test split, in LOGOS's layouts.

A record's text already holds prompt and answer in one string (``product<ReverseReact>reactants``), so a
task is "cut the text after its task token": the prompt ends with the task token and the reference is
what follows (retrosynthesis drops a trailing ``<ReagentS>…<ReagentE>`` block: LOGOS has no reagent tag
and reads every molecule after ``<ReverseReact>`` as a reactant). Generated sequences are cut the way
LOGOS's scripts cut them: the text after the first task token, up to the first end-of-text token (or, for
single-object answers, the object's end tag).

| task | records | prompt | answer |
|---|---|---|---|
| retrosynthesis | reverse_react | ``products<ReverseReact>`` | reactant blocks |
| forward_reaction | react | ``reactants[reagents]<React>`` | product blocks |
| pocket_search | search | ``<ProteinS>seq<ProteinE><Search>`` | pocket-annotated protein |
| ligand_design | complex_residue_surface_smiles | pocket-annotated protein ``<MoleculeS>`` | ligand SMILES |
| molecule_generation | (unconditional) | ``<MoleculeS>`` | SMILES |
| material_generation | (unconditional) | ``<MaterialS>`` | crystal or MOF text |
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from grammar.tags import (
    MATERIAL_E,
    MATERIAL_S,
    MOLECULE_E,
    MOLECULE_S,
    REACT,
    REAGENT_E,
    REAGENT_S,
    REVERSE_REACT,
    SEARCH,
)


class EvalError(ValueError):
    """A usage error of ``logos eval``: bad task name, dataset without a test split, tokenizer mismatch."""


# End-of-text spellings of the tokenizers logos and LOGOS use (native, Llama-3, Qwen, sentencepiece); a
# generated answer ends at the first of them, as in LOGOS's retrosynthesis script.
END_OF_TEXT = ("<eos>", "<|end_of_text|>", "<|endoftext|>", "<|eot_id|>", "</s>", "<pad>", "<bos>")
PERPLEXITY = "perplexity"


@dataclass(frozen=True)
class EvalTask:
    name: str
    record_task: str | None  # the grammar task of the test records it is cut from; None: unconditional
    task_token: str  # prompts end with it; answers start after it
    end_tag: str | None  # single-object answers also end at this tag
    logos_prompt_key: str | None  # the prompt's key in LOGOS's input JSONL (None: no input file)
    domain: str  # for unconditional tasks: the domain whose test/train records size and judge novelty


TASKS: dict[str, EvalTask] = {
    t.name: t
    for t in (
        EvalTask("retrosynthesis", "reverse_react", REVERSE_REACT, None, "test_input", "reaction"),
        EvalTask("forward_reaction", "react", REACT, None, "test_input", "reaction"),
        EvalTask("pocket_search", "search", SEARCH, None, "text", "pocket"),
        EvalTask("ligand_design", "complex_residue_surface_smiles", MOLECULE_S, MOLECULE_E,
                 "protein_pocket_ligand", "complex"),
        EvalTask("molecule_generation", None, MOLECULE_S, MOLECULE_E, None, "molecule"),
        EvalTask("material_generation", None, MATERIAL_S, MATERIAL_E, None, "material"),
    )
}
TASK_NAMES: tuple[str, ...] = (*TASKS, PERPLEXITY)
_REAGENTS = re.compile(re.escape(REAGENT_S) + ".*?" + re.escape(REAGENT_E), re.S)


def check_tasks(names: list[str] | tuple[str, ...] | None) -> list[str]:
    """The task names to run (all when none given); an unknown name is an ``EvalError`` naming the known ones."""
    if not names:
        return list(TASK_NAMES)
    unknown = [n for n in names if n not in TASK_NAMES]
    if unknown:
        raise EvalError(f"unknown task {unknown[0]!r} (known: {', '.join(TASK_NAMES)})")
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class Item:
    """One prompt of a task, with the reference answer (None for unconditional generation)."""

    id: str
    prompt: str
    reference: str | None


def without_reagents(text: str) -> str:
    return _REAGENTS.sub("", text)


def split_record(task: EvalTask, text: str) -> tuple[str, str]:
    """(prompt, reference) of one record's text; the prompt ends with the task token."""
    at = text.index(task.task_token) + len(task.task_token)
    prompt, rest = text[:at], text[at:]
    if task.name == "retrosynthesis":
        return prompt, without_reagents(rest)
    if task.end_tag is not None:
        return prompt, rest[: rest.index(task.end_tag)]
    return prompt, rest


def extract_answer(task: EvalTask, sequence: str) -> str:
    """The answer in a generated sequence: after the first task token (the whole text when it has none,
    e.g. an answer already cut out), up to the first end-of-text token or the task's end tag."""
    at = sequence.find(task.task_token)
    answer = sequence[at + len(task.task_token):] if at >= 0 else sequence
    stops = END_OF_TEXT + ((task.end_tag,) if task.end_tag else ())
    cut = min((i for i in (answer.find(s) for s in stops) if i >= 0), default=len(answer))
    return answer[:cut]


def build_items(task: EvalTask, records: Any, limit: int | None) -> list[Item]:
    """The task's items from test records (a polars frame with content_id, source_id, task, text), in
    content-id order (stable across runs and machines), identical (prompt, reference) pairs once; a
    source id seen again gets a ``#n`` suffix."""
    import polars as pl

    if task.record_task is None:
        count = limit if limit is not None else records.filter(pl.col("domain") == task.domain).height
        return [Item(f"{task.name}-{i}", task.task_token, None) for i in range(count)]
    rows = records.filter(pl.col("task") == task.record_task).sort("content_id")
    items, seen, repeats = [], set(), Counter()
    for source_id, text in rows.select("source_id", "text").iter_rows():
        prompt, reference = split_record(task, text)
        if (prompt, reference) in seen:
            continue
        seen.add((prompt, reference))
        seen_before = repeats[source_id]  # ids key the predictions: keep them unique
        repeats[source_id] += 1
        items.append(Item(f"{source_id}#{seen_before}" if seen_before else source_id, prompt, reference))
        if limit is not None and len(items) >= limit:
            break
    return items


def logos_input_row(task: EvalTask, item: Item) -> dict[str, str]:
    """One line of LOGOS's input JSONL for this task (``test_input``/``text``/``protein_pocket_ligand``)."""
    row = {"id": item.id, task.logos_prompt_key or "text": item.prompt}
    if item.reference is not None:
        row["groundtruth"] = item.reference
    return row


def molecule_blocks(text: str) -> list[str]:
    """The SMILES inside ``<MoleculeS>…<MoleculeE>`` blocks (LOGOS's regex), reagent blocks left out."""
    pattern = re.escape(MOLECULE_S) + "(.*?)" + re.escape(MOLECULE_E)
    return re.findall(pattern, without_reagents(text), re.S)


def material_text(answer: str) -> str:
    return f"{MATERIAL_S}{answer}{MATERIAL_E}"
