from __future__ import annotations

import pytest

from grammar.errors import MalformedText
from grammar.formats import DOMAINS, FORMATS, detect_task, parse_any
from tests.grammar.corpus import grammar_corpus


def test_every_fixture_string_is_detected_parsed_and_rewritten_identically():
    tasks_seen = set()
    for text in grammar_corpus():
        task, obj = parse_any(text)
        tasks_seen.add(task)
        assert FORMATS[task].write(obj) == text
    assert {"molecule", "react", "reverse_react", "protein", "pocket", "pocket_smiles", "search", "trans"} <= tasks_seen
    assert {"antibody", "antibody_antigen"} <= tasks_seen
    assert {t for t in tasks_seen if t.startswith("complex_")} == {
        "complex_residue_smiles", "complex_residue_surface_smiles", "complex_residue_surface_expanded_smiles"
    }


def test_domains_cover_the_logos_objects():
    assert set(DOMAINS) == {"protein", "pocket", "complex", "molecule", "reaction", "material", "antibody"}


@pytest.mark.parametrize("text", ["", "CCO", "<PocketS>K<PocketE>", "<MaterialE>"])
def test_undetectable_text(text):
    with pytest.raises(MalformedText, match="at char 0"):
        detect_task(text)


def test_detected_task_still_has_to_parse():
    assert detect_task("<React><MoleculeS>C<MoleculeE>") == "react"
    with pytest.raises(MalformedText, match="expected <MoleculeS>"):
        parse_any("<React><MoleculeS>C<MoleculeE>")
