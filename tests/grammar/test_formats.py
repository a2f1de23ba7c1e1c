from __future__ import annotations

import pytest
from corpus import grammar_corpus

from grammar.errors import MalformedText
from grammar.formats import DOMAINS, FORMATS, detect_task, parse_any


def test_every_fixture_string_is_detected_parsed_and_rewritten_identically():
    tasks_seen = set()
    for text in grammar_corpus():
        task, obj = parse_any(text)
        tasks_seen.add(task)
        assert FORMATS[task].write(obj) == text
    assert {"molecule", "react", "reverse_react", "protein", "pocket", "pocket_smiles", "search", "trans"} <= tasks_seen
    assert {t for t in tasks_seen if t.startswith("complex_")} == {
        "complex_residue_smiles", "complex_residue_surface_smiles", "complex_residue_surface_expanded_smiles"
    }


def test_domains_cover_the_logos_objects():
    assert set(DOMAINS) == {"protein", "pocket", "complex", "molecule", "reaction", "material"}


@pytest.mark.parametrize("text", ["", "CCO", "<React><MoleculeS>C<MoleculeE>", "<PocketS>K<PocketE>"])
def test_undetectable_text(text):
    with pytest.raises(MalformedText):
        detect_task(text)
