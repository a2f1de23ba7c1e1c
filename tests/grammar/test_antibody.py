"""The antibody formats: layout, round trips, malformed text, and the two CDR tokens in both vocabularies."""

from __future__ import annotations

import pytest

from grammar.antibody import (
    Antibody,
    AntibodyAntigen,
    AntibodyChain,
    parse_antibody,
    parse_antibody_antigen,
    write_antibody,
    write_antibody_antigen,
)
from grammar.errors import GrammarError, InvalidResidue, MalformedText
from grammar.formats import detect_task, parse_any
from grammar.pocket import BindingSite, Pocket
from grammar.protein import Protein
from grammar.tags import CDR_E, CDR_S, GRAMMAR_TAGS
from grammar.tokenizer import default_tokenizer
from grammar.vocab import grammar_vocabulary

# IMGT CDRs of 8KDM's heavy chain E and light chain D (checked against ANARCI in tests/pipeline/sources).
HEAVY = AntibodyChain(
    "QVQLVQSGAEVKKPGASVKVSCKTSGYTFTDHYMYWVRQAPGQGLEWMGVINPDAGSVTYAQKFQGRVTMTSDTSTSTVYMELSSLRSEDTAVYYCARDLFFIPAANSF"
    "DYWGQGTLVTVSS", ((25, 33), (50, 58), (96, 111)),
)
LIGHT = AntibodyChain(
    "EIVLTQSPATLSLSPGERATLSCRASQSVSSYLAWYQQKPGQAPRLLIYDATNRATGIPARFSGSGSGTDFTLTISSLEPEDFAVYYCQHRSNWPRMFTFGQGT",
    ((26, 32), (49, 52), (88, 99)),
)


def antibody_texts() -> list[str]:
    """Antibody texts for the corpus-wide grammar and tokenizer checks (tests/grammar/corpus.py)."""
    heavy = AntibodyChain(HEAVY.sequence, HEAVY.cdrs, paratope=(2, 27, 28))
    antigen = BindingSite(Protein.from_sequences("MKTAYIAKQR", "GGSW"), Pocket(((0, 3), (1, 0))))
    antibodies = [Antibody(HEAVY, LIGHT), Antibody(HEAVY), Antibody(None, LIGHT)]
    return [*map(write_antibody, antibodies), write_antibody_antigen(AntibodyAntigen(Antibody(heavy, LIGHT), antigen))]


def test_layout_heavy_then_light_with_cdrs_wrapped_whole():
    text = write_antibody(Antibody(HEAVY, LIGHT))
    assert text.startswith("<AntibodyS><ProteinS>QVQLVQSGAEVKKPGASVKVSCKTS<CdrS>GYTFTDHY<CdrE>MYW")
    assert text.count("<ProteinS>") == 2 and text.endswith("<ProteinE><AntibodyE>")
    assert "<ProteinE><ProteinS>EIVLTQ" in text  # the block boundary is the chain separator
    assert text.count(CDR_S) == text.count(CDR_E) == 6
    assert HEAVY.cdr_sequences() == ("GYTFTDHY", "INPDAGSV", "ARDLFFIPAANSFDY")


@pytest.mark.parametrize("antibody", [Antibody(HEAVY, LIGHT), Antibody(HEAVY), Antibody(None, LIGHT)],
                         ids=["paired", "nanobody", "light_only"])
def test_antibody_round_trip(antibody):
    text = write_antibody(antibody)
    assert detect_task(text) == "antibody"
    assert parse_antibody(text) == antibody
    assert parse_any(text) == ("antibody", antibody)
    tokenizer = default_tokenizer()
    assert tokenizer.decode(tokenizer.encode(text)) == text
    if antibody.heavy is None:
        assert text.startswith("<AntibodyS><ProteinS><ProteinE><ProteinS>EIV")  # the empty heavy slot


def test_interaction_round_trip_marks_paratope_inside_and_outside_cdrs():
    heavy = AntibodyChain(HEAVY.sequence, HEAVY.cdrs, paratope=(2, 27, 28))
    antigen = BindingSite(Protein.from_sequences("MKTAYIAKQR", "GGSW"), Pocket(((0, 3), (1, 0))))
    pair = AntibodyAntigen(Antibody(heavy, LIGHT), antigen)
    text = write_antibody_antigen(pair)
    assert text.startswith("<AntibodyS><ProteinS>QV<PocketS>Q<PocketE>LV")
    assert "<CdrS>GY<PocketS>T<PocketE><PocketS>F<PocketE>TDHY<CdrE>" in text
    assert text.endswith("<AntibodyE><ProteinS>MKT<PocketS>A<PocketE>YIAKQR<ProteinE><ProteinS><PocketS>G<PocketE>GSW"
                         "<ProteinE>")
    assert detect_task(text) == "antibody_antigen"
    assert parse_antibody_antigen(text) == pair
    tokenizer = default_tokenizer()
    assert tokenizer.decode(tokenizer.encode(text)) == text


@pytest.mark.parametrize("text, match", [
    ("<AntibodyS><ProteinS>QV<CdrS>Q<CdrE>L<CdrS>V<CdrE>Q<ProteinE><AntibodyE>", "2 CDRs"),
    ("<AntibodyS><ProteinS>Q<CdrS>V<CdrS>Q<CdrE>L<CdrE><ProteinE><AntibodyE>", "inside a CDR"),
    ("<AntibodyS><ProteinS>Q<CdrS>V<CdrE>Q<CdrS>L<CdrE>A<CdrS>C<ProteinE><AntibodyE>", "unterminated CDR"),
    ("<AntibodyS><ProteinS>Q<CdrS><CdrE>V<ProteinE><AntibodyE>", "non-empty CDR"),
    ("<AntibodyS><ProteinS><ProteinE><AntibodyE>", "followed by a light chain"),
    ("<AntibodyS><ProteinS>Q<CdrS>V<CdrE>Q<CdrS>L<CdrE>A<CdrS>C<CdrE><ProteinE><ProteinS><ProteinE><AntibodyE>",
     "empty light chain"),
    ("<AntibodyS><ProteinS>Q<CdrS><PocketS>V<PocketE><CdrE>Q<CdrS>L<CdrE>A<CdrS>C<CdrE><ProteinE><AntibodyE>",
     "no paratope marks"),
    ("<AntibodyS><ProteinS>Q<CdrS>V<CdrE>Q<CdrS>L<CdrE>A<CdrS>C<CdrE><ProteinE><AntibodyE><ProteinS>MK<ProteinE>",
     "marks its paratope"),
])
def test_malformed_antibody_text_names_the_problem(text, match):
    with pytest.raises(GrammarError, match=match):
        parse_any(text)


def test_interaction_needs_an_epitope_mark():
    text = ("<AntibodyS><ProteinS>Q<CdrS><PocketS>V<PocketE><CdrE>Q<CdrS>L<CdrE>A<CdrS>C<CdrE><ProteinE><AntibodyE>"
            "<ProteinS>MK<ProteinE>")
    with pytest.raises(MalformedText, match="no pocket residues"):
        parse_antibody_antigen(text)


def test_chain_checks():
    with pytest.raises(InvalidResidue, match="2 CDRs"):
        AntibodyChain("QVQLV", ((0, 1), (2, 3)))
    with pytest.raises(InvalidResidue, match="in order"):
        AntibodyChain("QVQLV", ((2, 3), (0, 1), (4, 5)))
    with pytest.raises(InvalidResidue, match="heavy or a light"):
        Antibody(None, None)


def test_cdr_tokens_close_both_vocabularies():
    vocab = grammar_vocabulary()
    assert vocab.tokens[-2:] == (CDR_S, CDR_E)  # appended: every version-2 id is unchanged
    assert vocab.version == "logos-grammar-3"
    assert GRAMMAR_TAGS[-2:] == (CDR_S, CDR_E)  # the HF extension adds GRAMMAR_TAGS as special tokens
    tokenizer = default_tokenizer()
    assert tokenizer.encode(CDR_S + CDR_E)[-2:] == [vocab.ids[CDR_S], vocab.ids[CDR_E]]


def test_chains_for_the_split_stage_cover_antibody_and_antigen():
    heavy = AntibodyChain(HEAVY.sequence, HEAVY.cdrs, paratope=(2,))
    pair = AntibodyAntigen(Antibody(heavy, LIGHT), BindingSite(Protein.from_sequences("MKTAYIAKQR"), Pocket(((0, 3),))))
    assert [c.sequence for c in pair.chains] == [HEAVY.sequence, LIGHT.sequence, "MKTAYIAKQR"]
    assert [c.sequence for c in Antibody(None, LIGHT).chains] == [LIGHT.sequence]
