"""The USPTO source on the real fixtures: USPTO-50k (first 2,500 test rows), USPTO-MIT (80 human-benchmark
reactions) and Lowe's grants (.rsmi). Unmapping, canonical form and reactant/reagent roles are checked
with RDKit on the raw mapped SMILES, independently of the source."""

from __future__ import annotations

import csv
import gzip
from collections import Counter
from pathlib import Path

import pytest
from rdkit import Chem

from grammar.formats import FORMATS
from grammar.reaction import ReagentPolicy
from grammar.tokenizer import default_tokenizer
from pipeline.records import Reject, Sample, SourceItem, dedup_key
from pipeline.sources import make_source
from pipeline.sources.base import Source, convert_file
from pipeline.sources.uspto import UsptoFormat, detect_format

USPTO_50K = "uspto/USPTO_50K_sample.csv"
MIT = "uspto/USPTO_MIT_test_human.txt"
LOWE = "uspto/lowe_grants_sample_small.rsmi"
LOWE_HEADER = "ReactionSmiles\tPatentNumber\tParagraphNum\tYear\tTextMinedYield\tCalculatedYield\n"


def uspto_source(**options: object) -> Source:
    """The source as the ingest engine builds it from (typed, checked) options."""
    return make_source("uspto", options)

def run(source: Source, uri: Path | str) -> tuple[list[SourceItem], list[Sample], list[Reject]]:
    """What the ingest engine does with one file: read, convert each item."""
    done = convert_file(source, str(uri))
    return done.items, done.samples, done.rejects


def unmapped_canonical(smiles: str) -> str:
    mol = Chem.MolFromSmiles(smiles)
    for atom in mol.GetAtoms():
        atom.SetAtomMapNum(0)
    return Chem.MolToSmiles(Chem.MolFromSmiles(Chem.MolToSmiles(mol)))


def independent_roles(mapped: str) -> tuple[list[str], list[str], list[str]]:
    """(reactants, reagents, products), canonical and sorted: a reactant-side molecule is a reagent when
    none of its atoms' map numbers (read by RDKit) occurs among the products' atoms."""
    reactants, reagents, products = (p.split(".") if p else [] for p in mapped.split(" ")[0].split(">"))
    product_maps = {a.GetAtomMapNum() for s in products for a in Chem.MolFromSmiles(s).GetAtoms()} - {0}
    kept = [s for s in reactants if {a.GetAtomMapNum() for a in Chem.MolFromSmiles(s).GetAtoms()} & product_maps]
    if product_maps and kept:
        reagents = reagents + [s for s in reactants if s not in kept]
        reactants = kept
    return tuple(sorted(unmapped_canonical(s) for s in part) for part in (reactants, reagents, products))


def check_samples(samples: list[Sample], mapped: list[str], policy: ReagentPolicy, stride: int = 1) -> None:
    """Pairs of (react, reverse_react) samples against the mapped reactions they came from (every
    ``stride``-th: the independent RDKit reading costs more than the source itself)."""
    tokenizer = default_tokenizer()
    assert len(samples) == 2 * len(mapped)
    for index in range(0, len(mapped), stride):
        raw = mapped[index]
        react, reverse = samples[2 * index], samples[2 * index + 1]
        assert (react.task, reverse.task) == ("react", "reverse_react")
        reaction = FORMATS["react"].parse(react.text)
        assert FORMATS["reverse_react"].parse(reverse.text) == reaction
        reactants, reagents, products = independent_roles(raw)
        expected_reagents = reagents if policy is ReagentPolicy.KEEP else []
        if policy is ReagentPolicy.MERGE:
            reactants, expected_reagents = sorted(reactants + reagents), []
        assert [m.smiles for m in reaction.reactants] == reactants
        assert [m.smiles for m in reaction.reagents] == expected_reagents
        assert [m.smiles for m in reaction.products] == products
        for molecule in (*reaction.reactants, *reaction.reagents, *reaction.products):
            mol = Chem.MolFromSmiles(molecule.smiles)
            assert all(atom.GetAtomMapNum() == 0 for atom in mol.GetAtoms())
            assert Chem.MolToSmiles(mol) == molecule.smiles  # re-canonicalizing changes nothing
        key = dedup_key("reaction", ".".join(reactants) + ">>" + ".".join(products))
        assert react.dedup_key == reverse.dedup_key == key
        for sample in (react, reverse):
            assert tokenizer.decode(tokenizer.encode(sample.text)) == sample.text


def test_uspto_50k(data_dir: Path) -> None:
    with open(data_dir / USPTO_50K) as handle:
        rows = list(csv.DictReader(handle))
    items, samples, rejects = run(uspto_source(), data_dir / USPTO_50K)
    assert (len(items), rejects) == (len(rows), [])
    check_samples(samples, [row["reactants>reagents>production"] for row in rows], ReagentPolicy.DROP, stride=5)
    assert items[1].locator == "row 2"
    for row, sample in zip(rows, samples[::2], strict=True):
        assert sample.source_id.startswith(row["id"] + ":row ")
        assert sample.metadata["patent_number"] == row["id"]
        assert sample.metadata["reaction_class"] == int(row["class"])
        if row["id"].endswith(("A1", "A2")):  # pre-grant publications: US + year + serial
            assert sample.metadata["year"] == int(row["id"][2:6])
        else:
            assert "year" not in sample.metadata


@pytest.mark.parametrize("policy", [None, ReagentPolicy.KEEP, ReagentPolicy.MERGE])
def test_uspto_mit_with_and_without_bond_edits(data_dir: Path, tmp_path: Path, policy: ReagentPolicy | None) -> None:
    lines = (data_dir / MIT).read_text().splitlines()
    options = {} if policy is None else {"reagents": policy}
    items, samples, rejects = run(uspto_source(**options), data_dir / MIT)
    assert (len(items), rejects) == (len(lines), [])
    check_samples(samples, lines, policy or ReagentPolicy.DROP)
    assert samples[0].source_id == "USPTO_MIT_test_human.txt:line 1"
    # The training files of USPTO-MIT carry a bond-edit field after the reaction.
    with_edits = tmp_path / "train.txt"
    with_edits.write_text("".join(f"{line} 1-2-0.0;3-4-1.0\n" for line in lines[:5]))
    _, edited, _ = run(uspto_source(**options), with_edits)
    assert [s.text for s in edited] == [s.text for s in samples[:10]]
    assert edited[0].metadata["bond_edits"] == "1-2-0.0;3-4-1.0"


@pytest.mark.parametrize("header", [False, True])
def test_lowe_rsmi_with_and_without_header(data_dir: Path, tmp_path: Path, header: bool) -> None:
    lines = (data_dir / LOWE).read_text().splitlines(keepends=True)
    path = tmp_path / "grants.rsmi"
    path.write_text((LOWE_HEADER if header else "") + "".join(lines))
    assert detect_format(path.read_text().splitlines()[0]) is UsptoFormat.LOWE
    items, samples, rejects = run(uspto_source(reagents="keep"), path)
    assert (len(items), rejects) == (len(lines), [])
    check_samples(samples, [line.split("\t")[0] for line in lines], ReagentPolicy.KEEP)
    columns = [line.rstrip("\n").split("\t") for line in lines]
    assert [s.metadata["patent_number"] for s in samples[::2]] == [c[1] for c in columns]
    assert [s.metadata["year"] for s in samples[::2]] == [int(c[3]) for c in columns]
    assert items[0].locator == ("line 2" if header else "line 1")
    # Diethyl ether sits among the mapped reactants but contributes no atom: a reagent, kept as one.
    first = FORMATS["react"].parse(samples[0].text)
    assert "CCOCC" in [m.smiles for m in first.reagents] and "CCOCC" not in [m.smiles for m in first.reactants]


def test_lowe_with_roles_as_written(data_dir: Path) -> None:
    _, samples, _ = run(uspto_source(roles_from_atom_maps=False, reagents="drop"), data_dir / LOWE)
    first = FORMATS["react"].parse(samples[0].text)
    assert "CCOCC" in [m.smiles for m in first.reactants] and first.reagents == ()


def test_bad_reactions_are_rejected_and_the_rest_converts(data_dir: Path, tmp_path: Path) -> None:
    rows = (data_dir / USPTO_50K).read_text().splitlines(keepends=True)
    bad = [
        "US0000001,1,[CH3:1][C:2]([CH3:3])([CH3:4])([CH3:5])[CH3:6]>>[CH4:1]\n",  # pentavalent carbon
        "US0000002,1,CC(=O>>CC\n",  # unparsable
        "US0000003,1,CCO>CC\n",  # two parts
    ]
    path = tmp_path / "bad_50k.csv"
    path.write_text("".join(rows[:6] + bad + rows[6:11]))
    items, samples, rejects = run(uspto_source(), path)
    assert len(items) == 13 and len(samples) == 2 * 10
    assert [(r.locator, r.reason_code) for r in rejects] == [
        ("row 6", "invalid_smiles"), ("row 7", "invalid_smiles"), ("row 8", "invalid_smiles"),
    ]
    assert "valence" in rejects[0].reason.lower()


def test_file_level_problems(data_dir: Path, tmp_path: Path) -> None:
    text = (data_dir / MIT).read_bytes()
    compressed = gzip.compress(text)
    cases = {
        "empty.txt": (b"", "empty_file"),
        "corrupt.txt.gz": (compressed[: len(compressed) // 2], "corrupt_gzip"),
        "latin1.rsmi": ((data_dir / LOWE).read_bytes() + b"CC>>C\tUS\xe9\t\t1976\t\t\n", "not_utf8"),
        "wrong.csv": (b"id,smiles\n1,CCO\n", "wrong_header"),
    }
    for name, (content, code) in cases.items():
        (tmp_path / name).write_bytes(content)
        items, samples, rejects = run(uspto_source(), tmp_path / name)
        assert [r.reason_code for r in rejects] == [code], name
        assert len(samples) == 2 * len(items), name
    assert Counter(r.stage for r in rejects) == {"read": 1}


@pytest.mark.parametrize("path", [USPTO_50K, MIT, LOWE])
def test_default_samples_have_logos_answer_layout(data_dir: Path, path: str) -> None:
    """By default no reagent block anywhere; with ``keep`` the reagents are context before the task token,
    never inside the answer (LOGOS reads every molecule after <ReverseReact> as a reactant)."""
    _, samples, _ = run(uspto_source(), data_dir / path)
    assert samples and all("<ReagentS>" not in s.text for s in samples)
    _, kept, _ = run(uspto_source(reagents="keep"), data_dir / path)
    for sample in kept:
        task_token = "<React>" if sample.task == "react" else "<ReverseReact>"
        answer = sample.text.split(task_token, 1)[1]
        assert "<ReagentS>" not in answer and answer.startswith("<MoleculeS>")
    if path != USPTO_50K:  # 50k has no reagents at all
        assert any("<ReagentS>" in s.text for s in kept if s.task == "reverse_react")
