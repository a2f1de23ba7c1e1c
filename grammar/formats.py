"""The registry of grammar formats: one entry per task, naming its domain, writer and parser.

``FORMATS[task].write(obj)`` gives grammar text; ``FORMATS[task].parse(text)`` gives the object back;
``FORMATS[task].same(a, b)`` says whether two objects are the same for that format (exact equality of
what the text carries; for crystals, a pymatgen ``StructureMatcher`` match).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from grammar.antibody import parse_antibody, parse_antibody_antigen, write_antibody, write_antibody_antigen
from grammar.complex import Complex, ComplexForm, parse_complex, write_complex
from grammar.errors import MalformedText
from grammar.lexer import TokenStream
from grammar.molecule import parse_molecule, write_molecule
from grammar.pocket import parse_pocket, parse_search, parse_trans, write_pocket, write_search, write_trans
from grammar.protein import parse_protein, write_protein
from grammar.reaction import parse_reaction, parse_reverse_reaction, write_reaction, write_reverse_reaction
from grammar.tags import (
    ANTIBODY_E,
    ANTIBODY_S,
    MATERIAL_S,
    METAL_S,
    MOLECULE_S,
    POCKET_S,
    PROTEIN_S,
    REACT,
    REVERSE_REACT,
    SEARCH,
    TRANS,
)


def _identity(obj: Any) -> Any:
    return obj


def _equal(a: Any, b: Any) -> bool:
    return a == b


@dataclass(frozen=True)
class Format:
    task: str
    domain: str
    write: Callable[[Any], str]
    parse: Callable[[str], Any]
    view: Callable[[Any], Any] = _identity  # the part of an object its text carries
    same: Callable[[Any, Any], bool] = _equal


def _complex_format(form: ComplexForm) -> Format:
    def parse(text: str) -> Complex:
        complex_, found = parse_complex(text)
        if found is not form:
            raise MalformedText(f"expected the {form} complex form, found {found}", position=0, text=text)
        return complex_

    return Format(
        f"complex_{form.value}", "complex", lambda c: write_complex(c, form), parse, view=lambda c: c.view(form)
    )


def _material_formats() -> list[Format]:
    from grammar.material import crystals_match, parse_crystal, parse_mof, write_crystal, write_mof

    return [
        Format("material", "material", write_crystal, parse_crystal, same=crystals_match),
        Format("mof", "material", write_mof, parse_mof),
    ]


FORMATS: dict[str, Format] = {
    f.task: f
    for f in [
        Format("protein", "protein", write_protein, parse_protein),
        Format("pocket", "pocket", write_pocket, lambda t: parse_pocket(t, expanded=False)),
        Format(
            "pocket_smiles", "pocket",
            lambda s: write_pocket(s, expanded=True), lambda t: parse_pocket(t, expanded=True),
        ),
        Format("search", "pocket", write_search, parse_search),
        Format("trans", "pocket", write_trans, parse_trans),
        *(_complex_format(form) for form in ComplexForm),
        Format("molecule", "molecule", write_molecule, parse_molecule),
        Format("react", "reaction", write_reaction, parse_reaction),
        Format("reverse_react", "reaction", write_reverse_reaction, parse_reverse_reaction),
        *_material_formats(),
        Format("antibody", "antibody", write_antibody, parse_antibody),
        Format("antibody_antigen", "antibody", write_antibody_antigen, parse_antibody_antigen),
    ]
}
DOMAINS: tuple[str, ...] = tuple(dict.fromkeys(f.domain for f in FORMATS.values()))


def detect_task(text: str) -> str:
    """Which format a grammar string is in, read off its tags (the parser then checks the rest)."""
    tokens = [t.text for t in TokenStream(text).tokens]
    present = set(tokens)
    if not tokens:
        raise MalformedText("empty grammar text", position=0, text=text)
    if tokens[0] == ANTIBODY_S:
        closed = tokens.index(ANTIBODY_E) + 1 if ANTIBODY_E in present else len(tokens)
        return "antibody_antigen" if closed < len(tokens) else "antibody"
    if tokens[0] == MATERIAL_S:
        return "mof" if METAL_S in present else "material"
    for task_token, task in ((SEARCH, "search"), (TRANS, "trans"), (REACT, "react"), (REVERSE_REACT, "reverse_react")):
        if task_token in present:
            return task
    if tokens[0] == MOLECULE_S:
        return "molecule"
    if tokens[0] == PROTEIN_S:
        if MOLECULE_S in present:
            _, form = parse_complex(text)
            return f"complex_{form.value}"
        if POCKET_S not in present:
            return "protein"
        return "pocket" if _pocket_is_one_letter(tokens) else "pocket_smiles"
    raise MalformedText(f"text starts with {tokens[0]!r}, not an object tag", position=0, text=text)


def _pocket_is_one_letter(tokens: list[str]) -> bool:
    first = tokens.index(POCKET_S)
    return tokens[first + 2 : first + 3] == ["<PocketE>"] and len(tokens[first + 1]) == 1


def parse_any(text: str) -> tuple[str, Any]:
    task = detect_task(text)
    return task, FORMATS[task].parse(text)
