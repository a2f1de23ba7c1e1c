"""The crystal grammar on the real Materials Project fixtures (tests/data/mp, see PROVENANCE.md)."""

from __future__ import annotations

import csv
import gzip
import json
import re
import warnings
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import spglib
from pymatgen.analysis.local_env import MinimumDistanceNN
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from grammar.errors import DisorderedStructure, GrammarError, InvalidStructure, MalformedText
from grammar.formats import FORMATS, detect_task
from grammar.material import (
    Crystal,
    CrystalGrammarConfig,
    contacts_consistent,
    crystals_match,
    parse_crystal,
    write_crystal,
)
from grammar.material.cell import element_order, expand_cell
from grammar.material.contacts import site_contacts
from grammar.material.crystal_text import read_crystal
from grammar.material.symmetry import crystal_system
from grammar.material.tokens import CONTACT_BINS
from grammar.tokenizer import default_tokenizer

MP = Path(__file__).parents[1] / "data" / "mp"
MIN_ROUND_TRIP_RATE = 0.995


@lru_cache(maxsize=1)
def fixture_crystals() -> list[tuple[str, Structure, int | None]]:
    """(name, structure, Materials Project's own space-group number where the file states one)."""
    found: list[tuple[str, Structure, int | None]] = []
    for path in sorted((MP / "structures").glob("*.json")):
        found.append((path.name, Structure.from_dict(json.loads(path.read_text())), None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen's CIF reader warns about rounding in MP CIFs
        found.append(("Si_mp_149.cif", Structure.from_file(MP / "Si_mp_149.cif"), None))
        with open(MP / "mp_20_sample.csv") as handle:
            for row in csv.DictReader(handle):
                structure = Structure.from_str(row["cif"], fmt="cif")
                found.append((row["material_id"], structure, int(row["spacegroup.number"])))
    with gzip.open(MP / "emmet_materials_Li_Fe_V.json.gz") as handle:
        for doc in json.load(handle):
            found.append((doc["task_id"], Structure.from_dict(doc["structure"]), doc["symmetry"]["number"]))
    return found


@lru_cache(maxsize=1)
def ordered_texts() -> list[tuple[str, Crystal, str]]:
    return [
        (name, crystal, write_crystal(crystal))
        for name, structure, _ in fixture_crystals()
        if structure.is_ordered
        for crystal in [Crystal.from_structure(structure, name)]
    ]


def test_fixture_inventory_is_what_provenance_lists():
    names = [name for name, _, _ in fixture_crystals()]
    assert len(names) == 11 + 1 + 71 + 21
    disordered = [name for name, structure, _ in fixture_crystals() if not structure.is_ordered]
    assert disordered == ["Li10GeP2S12.json"]  # Li sites at 0.69 occupancy in the pymatgen test file


def test_every_ordered_fixture_crystal_round_trips():
    tokenizer = default_tokenizer()
    failures = []
    for name, crystal, text in ordered_texts():
        decoded = parse_crystal(text)
        if not crystals_match(crystal, decoded):
            failures.append(f"{name}: decoded structure does not match under StructureMatcher")
        elif write_crystal(decoded) != text:
            failures.append(f"{name}: text is not idempotent")
        elif tokenizer.decode(tokenizer.encode(text)) != text:
            failures.append(f"{name}: tokenizer round trip changed the text")
    rate = 1 - len(failures) / len(ordered_texts())
    print(f"crystal round trip: {rate:.2%} of {len(ordered_texts())}", *failures, sep="\n  ")
    assert rate >= MIN_ROUND_TRIP_RATE, failures


def test_header_matches_pymatgen_composition_and_conventional_cell():
    for name, crystal, text in ordered_texts():
        header = re.match(r"<MaterialS>((?:\[[A-Za-z]+\]<n\d+>)+)<sg", text).group(1)
        pairs = [(el, int(n)) for el, n in re.findall(r"\[([A-Za-z]+)\]<n(\d+)>", header)]
        reduced = crystal.structure.composition.element_composition.reduced_composition
        assert Composition(dict(pairs)) == reduced, name
        assert [el for el, _ in pairs] == [el.symbol for el in sorted(reduced.elements, key=lambda e: e.X)], name
        multiplicities = [int(m) for m in re.findall(r"<w(\d+)[A-Za-z]>", text)]
        refined = SpacegroupAnalyzer(crystal.structure, symprec=0.01).get_refined_structure()
        assert sum(multiplicities) == len(refined), name


def test_space_group_token_agrees_with_materials_project_at_its_symprec():
    # MP computes symmetry with spglib at symprec 0.1; with that setting the grammar must agree with
    # the number MP published for every entry that carries one.
    config = CrystalGrammarConfig(symprec=0.1, fallback_symprecs=())
    checked = 0
    for name, structure, mp_number in fixture_crystals():
        if mp_number is None or not structure.is_ordered:
            continue
        text = write_crystal(Crystal.from_structure(structure, name), config)
        assert f"<sg{mp_number}>" in text, (name, mp_number, text[:80])
        checked += 1
    assert checked == 92


def test_symprec_fallback_sequence_ends_in_p1():
    crystal = Crystal.from_structure(Structure.from_file(MP / "structures" / "LiFePO4.json"))
    # spglib finds no symmetry at 10 Å (every atom is within tolerance of every other): P1, every atom 1a.
    p1 = CrystalGrammarConfig(symprec=10.0, fallback_symprecs=())
    text = write_crystal(crystal, p1)
    assert "<sg1>" in text and text.count("<w1a>") == len(crystal.structure)
    decoded = parse_crystal(text)
    assert crystals_match(crystal, decoded) and write_crystal(decoded, p1) == text
    # With a fallback precision the same crystal keeps its symmetry, exactly as at that precision alone.
    falling_back = CrystalGrammarConfig(symprec=10.0, fallback_symprecs=(0.01,))
    assert write_crystal(crystal, falling_back) == write_crystal(crystal)


def test_rutile_reads_like_the_international_tables():
    # Rutile (Baur 1956): P4_2/mnm, a 4.594 c 2.959, Ti 2a (0,0,0), O 4f (x,x,0) x = 0.3053.
    rutile = Structure.from_spacegroup(
        "P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"], [[0, 0, 0], [0.3053, 0.3053, 0]]
    )
    text = write_crystal(Crystal.from_structure(rutile))
    assert text.startswith("<MaterialS>[Ti]<n1>[O]<n2><sg136><L4.60><L2.96>[Ti]<w2a><f0><f0><f0>")
    # Ti is octahedral: 4 O at 1.948 Å and 2 O at 1.985 Å (rutile's textbook bond lengths).
    assert "[Ti]<w2a><f0><f0><f0>[O]<n4><d1.95>[O]<n2><d2.00>[O]<w4f>" in text
    # 4f written as its smallest image (1/2 - x, 1/2 + x, 1/2): 0.1947 * 1200 = 233.6.
    assert "[O]<w4f><f234><f966><f600>" in text
    assert crystals_match(Crystal(rutile), parse_crystal(text))


def test_special_position_off_the_grid_keeps_its_multiplicity():
    # Ni3Sn-like P6_3/mmc with Ni on 6h (x, 2x, 1/4), x = 0.83705: rounding x and 2x separately gives
    # 1004 and 809 (not 2 * 1004 - 1200 = 808), which would make a 24-fold general position.
    structure = Structure.from_spacegroup(
        194, Lattice.hexagonal(5.29, 4.24), ["Sn", "Ni"], [[1 / 3, 2 / 3, 1 / 4], [0.83705, 0.6741, 0.25]]
    )
    text = write_crystal(Crystal.from_structure(structure))
    x, y, _ = (int(k) for k in re.search(r"\[Ni\]<w6h><f(\d+)><f(\d+)><f(\d+)>", text).groups())
    assert {(2 * x - y) % 1200, (2 * y - x) % 1200, (x + y) % 1200} & {0}  # on a 6h line of the orbit
    decoded = parse_crystal(text).structure
    assert len(decoded) == 8
    assert SpacegroupAnalyzer(decoded).get_space_group_number() == 194


def _origin_choice_groups() -> list[int]:
    """Space groups listed with two origins (choice 1/2) or two axes (H/R) in spglib's Hall table."""
    choices: dict[int, set[str]] = {}
    for hall_number in range(1, 531):
        group = spglib.get_spacegroup_type(hall_number)
        choices.setdefault(group.number, set()).add(group.choice)
    return [n for n, found in choices.items() if found & {"1", "2", "H", "R"}]


def test_decoding_uses_the_setting_spglib_standardizes_to():
    # The crux of decoding: operations in the same setting as the encoder. The 31 groups with two
    # origins or two axes are built by pymatgen in its own setting (origin choice 2 and others),
    # then written and read back; the decoded crystal must match and show the same group.
    rng = np.random.default_rng(7)
    lattices = {"orthorhombic": Lattice.orthorhombic(9, 10, 11), "tetragonal": Lattice.tetragonal(10, 11),
                "trigonal": Lattice.hexagonal(10, 11), "cubic": Lattice.cubic(16)}
    groups = _origin_choice_groups()
    assert len(groups) == 31 and {48, 166, 227} <= set(groups)
    for number in groups:
        lattice = lattices[crystal_system(number)]
        while True:  # a general position for Cl, not closer than 1.2 Å to any image
            general = rng.random(3).tolist()
            structure = Structure.from_spacegroup(number, lattice, ["Na", "Cl"], [[0, 0, 0], general])
            distances = structure.distance_matrix + 10 * np.eye(len(structure))
            if distances.min() > 1.2:
                break
        crystal = Crystal.from_structure(structure, f"sg{number}")
        text = write_crystal(crystal)
        decoded = parse_crystal(text)
        assert f"<sg{number}>" in text
        assert SpacegroupAnalyzer(decoded.structure).get_space_group_number() == number
        assert crystals_match(crystal, decoded) and write_crystal(decoded) == text, number


def test_contacts_follow_minimum_distance_nn():
    finder = MinimumDistanceNN(tol=0.2, cutoff=CONTACT_BINS.highest)
    for name, crystal, _ in ordered_texts()[:60]:
        structure = SpacegroupAnalyzer(crystal.structure).get_refined_structure()
        indices = list(range(0, len(structure), max(1, len(structure) // 4)))
        ours = site_contacts(structure, indices, tolerance=0.2, cutoff=CONTACT_BINS.highest, order=str)
        for index, groups in zip(indices, ours, strict=True):
            expected = Counter(
                (n["site"].specie.symbol, CONTACT_BINS.index(n["site"].nn_distance))
                for n in finder.get_nn_info(structure, index)
            )
            assert Counter({(g.element, g.distance_bin): g.count for g in groups}) == expected, (name, index)


def test_written_contacts_come_from_the_decoded_cell():
    """The writer takes contacts from the expanded cell's arrays (no Structure): the same Cartesian coordinates,
    bit for bit, and the same contact groups as ``site_contacts`` on the decoded ``Structure`` (checked above
    against MinimumDistanceNN)."""
    for name, _, text in ordered_texts():
        parsed = read_crystal(text)
        expanded = expand_cell(parsed.cell)
        structure = expanded.structure()
        assert np.array_equal(expanded.cart_coords(), structure.cart_coords), name
        ours = site_contacts(structure, expanded.representatives, tolerance=0.2, cutoff=CONTACT_BINS.highest,
                             order=element_order)
        assert ours == list(parsed.contacts), name


def test_bin_indices_of_an_array_are_the_scalar_indices():
    # halves of a step (round half to even), both ends, beyond both ends, and NaN (outside every bin)
    values = np.array([0.5, 0.525, 0.575, 0.62500000001, 2.449999, 7.975, 8.0, 8.03, 8.2, 0.1, -3.0, np.nan])
    finite = values[np.isfinite(values)]
    assert CONTACT_BINS.indices(finite).tolist() == [CONTACT_BINS.index(float(v)) for v in finite]
    assert CONTACT_BINS.contained(values).tolist() == [CONTACT_BINS.contains(float(v)) for v in values]


def test_contacts_are_consistent_and_the_measure_can_fail():
    scores = [contacts_consistent(crystal, text) for _, crystal, text in ordered_texts()]
    assert np.mean(scores) > 0.99 and min(scores) > 0.9
    _, crystal, text = next(item for item in ordered_texts() if item[0] == "TiO2.json")
    shifted = re.sub(r"<d(\d+\.\d\d)>", lambda m: CONTACT_BINS.token(float(m.group(1)) + 1.0), text)
    assert contacts_consistent(crystal, shifted) == 0.0


def test_partial_occupancy_is_rejected_with_the_site():
    structure = Structure.from_file(MP / "structures" / "TiO2.json")
    structure.replace(3, {"Fe": 0.5, "Mn": 0.5})
    with pytest.raises(DisorderedStructure, match=r"TiO2: site 3 at .* partially occupied \(Fe:0.5, Mn:0.5\)"):
        Crystal.from_structure(structure, "TiO2")
    real = next(s for name, s, _ in fixture_crystals() if name == "Li10GeP2S12.json")
    with pytest.raises(DisorderedStructure, match=r"site 0 .*\(Li:0.691\)"):
        Crystal.from_structure(real)


def test_lattice_outside_the_bins_and_overlapping_atoms_are_invalid():
    with pytest.raises(InvalidStructure, match=r"lattice a = 120\.000 Å is outside"):
        Crystal.from_structure(Structure(Lattice.cubic(120.0), ["Na"], [[0, 0, 0]]))
    overlapping = Structure(Lattice.cubic(4.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5001]])
    with pytest.raises(InvalidStructure, match="NaCl2: Cl site overlaps"):
        write_crystal(Crystal.from_structure(overlapping, "NaCl2"))


@pytest.mark.parametrize(
    ("a", "b"),
    [("K2O2", "KO"), ("K4O4", "K2O2"), ("H2O2", "HO"), ("Li6Fe3P3O12", "LiFePO4"), ("K2O", "KO"), ("NaCl", "NaCl2"),
     ("Fe2O3", "Fe3O4"), ("CO2", "CO"), ("SiO2", "Si2O4"), ("NaCl", "KCl")],
)
def test_written_composition_check_agrees_with_pymatgen_reduction(a, b):
    """The writer compares the cell's atoms with the input's by exact count ratios: the same verdict as
    comparing pymatgen's reduced compositions (which keep peroxides whole, K2O2 not KO)."""
    from grammar.material.crystal import _proportional

    counts = [Counter({el.symbol: int(n) for el, n in Composition(f).items()}) for f in (a, b)]
    same = Composition(a).reduced_composition == Composition(b).reduced_composition
    assert _proportional(*counts) is same


RUTILE = (
    "<MaterialS>[Ti]<n1>[O]<n2><sg136><L4.60><L2.96>[Ti]<w2a><f0><f0><f0>[O]<n4><d1.95>[O]<n2><d2.00>"
    "[O]<w4f><f234><f966><f600>[Ti]<n2><d1.95>[Ti]<n1><d2.00><MaterialE>"
)


@pytest.mark.parametrize(
    ("old", "new", "error", "reason", "shift"),
    [
        # shift: where the error points, relative to the edit (None: the end of the text)
        ("<MaterialE>", "", MalformedText, "unterminated crystal: expected <MaterialE>", None),
        ("<f600>[Ti]", "[Ti]", MalformedText, "expected coordinate z <f…>, found '[Ti]'", 0),
        ("<w4f>", "<w2f>", InvalidStructure, "has 4 images in space group 136, but its Wyckoff token says 2", -3),
        ("[O]<w4f>", "[Ca]<w4f>", InvalidStructure, "element Ca is not in the composition", 0),
        ("[O]<n2>", "[O]<n3>", InvalidStructure, "the header says {'Ti': 1, 'O': 3}", -8),
        ("<L2.96>", "<L2.961>", MalformedText, "expected lattice c (a <L…> bin token)", 0),
        ("<f966>", "<f1200>", MalformedText, "coordinate y <f1200> is outside 0..1199", 0),
        ("[Ti]<n1>", "[Xx]<n1>", MalformedText, "expected an element token like [Fe], found '[Xx]'", 0),
        ("[Ti]<n1>[O]<n2><sg136>", "<sg136>[Ti]<n1>[O]<n2>", MalformedText, "expected the composition", 0),
        ("<w2a>", "<w2Z>", MalformedText, "expected a Wyckoff token <wMX>, found '<w2Z>'", 0),
        ("<d2.00>", "<A90.00>", MalformedText, "expected a contact distance (a <d…> bin token)", 0),
    ],
)
def test_malformed_text_names_position_and_reason(old, new, error, reason, shift):
    at = RUTILE.index(old)
    text = RUTILE[:at] + new + RUTILE[at + len(old):]
    with pytest.raises(error) as caught:
        parse_crystal(text)
    assert reason in caught.value.reason
    assert caught.value.position == (len(text) if shift is None else at + shift)
    assert f"at char {caught.value.position}" in str(caught.value)


def test_contact_before_any_site_and_trailing_text_are_errors():
    with pytest.raises(MalformedText, match="contact group comes before any site"):
        parse_crystal("<MaterialS>[Na]<n1><sg1>" + "<L3.00>" * 3 + "<A90.00>" * 3 + "[Na]<n6><d3.00><MaterialE>")
    with pytest.raises(MalformedText, match="trailing text"):
        parse_crystal(RUTILE + "<MaterialS>")
    assert isinstance(parse_crystal(RUTILE), Crystal)


def test_formats_registry_detects_and_round_trips_a_crystal():
    assert detect_task(RUTILE) == "material"
    material = FORMATS["material"]
    crystal = material.parse(RUTILE)
    assert material.write(crystal) == RUTILE
    assert material.same(crystal, parse_crystal(RUTILE))
    with pytest.raises(GrammarError):
        material.parse(RUTILE.replace("<sg136>", "<sg231>"))
