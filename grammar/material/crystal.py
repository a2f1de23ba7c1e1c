"""Crystals: ``<MaterialS>`` COMPOSITION SPACEGROUP LATTICE SITES ``<MaterialE>``.

- COMPOSITION: the reduced formula as ``[El]<nK>`` pairs, in pymatgen's formula (electronegativity) order.
- SPACEGROUP: ``<sgN>`` of spglib's standardization (symprec falls back along ``CrystalGrammarConfig``).
- LATTICE: the free parameters of the conventional cell's crystal system (``<L..>`` lengths, ``<A..>``
  angles): cubic a; tetragonal, trigonal, hexagonal a c; orthorhombic a b c; monoclinic a b c beta;
  triclinic a b c alpha beta gamma.
- SITES: per Wyckoff orbit ``[El]<wMX><fA><fB><fC>`` (element, multiplicity and letter in the
  conventional cell, a representative on the 1/1200 grid), then its contacts ``[El]<nK><dD.DD>``.

Decoding expands each representative with the space group's operations (``grammar.material.cell``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from pymatgen.analysis.structure_matcher import ElementComparator, StructureMatcher
from pymatgen.core import Element, Lattice, Species, Structure

from grammar.errors import DisorderedStructure, InvalidStructure
from grammar.material.cell import (
    ExpandedCell,
    OrbitError,
    SymmetricCell,
    cell_counts,
    element_order,
    expand,
    expand_cell,
    quantize,
    reduce_counts,
    reduced_composition,
)
from grammar.material.contacts import Contact, cell_contacts, reproduced_fraction, site_contacts
from grammar.material.crystal_text import ParsedCrystal, format_crystal, read_crystal
from grammar.material.symmetry import standardize, standardize_cell
from grammar.material.tokens import ANGLE_BINS, CONTACT_BINS, LENGTH_BINS, MAX_COUNT
from grammar.molecule import element_symbols

# Round-trip equality: the tolerances of the issue (pymatgen's defaults are 0.2 / 0.3 / 5 too).
MATCH_LTOL = 0.2
MATCH_STOL = 0.3
MATCH_ANGLE_TOL = 5.0
MAX_REFINEMENTS = 8


@dataclass(frozen=True, slots=True)
class CrystalGrammarConfig:
    symprec: float = 0.01  # Å, spglib's distance tolerance
    angle_tolerance: float = 5.0  # degrees
    # Tried in order when spglib finds no symmetry at ``symprec``; after the last one the crystal is
    # written in P1 (every atom its own 1a orbit).
    fallback_symprecs: tuple[float, ...] = (0.1,)
    contact_tolerance: float = 0.2  # MinimumDistanceNN: neighbours within (1 + tol) * nearest distance
    contact_cutoff: float = CONTACT_BINS.highest  # Å; nothing beyond the last contact bin is written

    @property
    def symprecs(self) -> tuple[float, ...]:
        return (self.symprec, *self.fallback_symprecs)


DEFAULT_CRYSTAL_CONFIG = CrystalGrammarConfig()


def _element(site_index: int, species, where: str) -> str:
    element = species.element if isinstance(species, Species) else species
    if not isinstance(element, Element) or element.symbol not in element_symbols():
        raise InvalidStructure(f"{where}site {site_index} holds {species!s}, not a chemical element")
    return element.symbol


@dataclass(frozen=True, eq=False)  # '==' is identity: crystals are compared with crystals_match
class Crystal:
    """An ordered crystal; compare two with ``crystals_match`` (the text carries symmetry, not the cell)."""

    structure: Structure = field(compare=False)
    source_id: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        where = f"{self.source_id}: " if self.source_id else ""
        if len(self.structure) == 0:
            raise InvalidStructure(f"{where}structure has no sites")
        for i, site in enumerate(self.structure):
            if not site.is_ordered:
                occupancy = ", ".join(f"{sp}:{amount:g}" for sp, amount in site.species.items())
                raise DisorderedStructure(
                    f"{where}site {i} at {np.round(site.frac_coords, 4).tolist()} is partially occupied "
                    f"({occupancy}); the crystal grammar writes ordered crystals only"
                )
            _element(i, site.specie, where)
        for name, value in zip(("a", "b", "c"), self.structure.lattice.abc, strict=True):
            if not LENGTH_BINS.contains(value):
                raise InvalidStructure(f"{where}lattice {name} = {value:.3f} Å is outside the length bins")
        for name, value in zip(("alpha", "beta", "gamma"), self.structure.lattice.angles, strict=True):
            if not ANGLE_BINS.contains(value):
                raise InvalidStructure(f"{where}lattice {name} = {value:.3f}° is outside the angle bins")

    @classmethod
    def from_structure(cls, structure: Structure, source_id: str | None = None) -> Crystal:
        return cls(structure, source_id)


def crystals_match(a: Crystal, b: Crystal) -> bool:
    """Same crystal up to the grammar's resolution: elements only (no oxidation states or magmoms).

    The equality of ``logos check roundtrip`` and of crystal dedup. Both sides are reduced to
    primitive cells (pymatgen's default) *and* the matcher may map one cell onto a supercell of the
    other (``attempt_supercell=True``). Why both: pymatgen's primitive reduction (0.25 Å tolerance)
    can send a low-symmetry supercell and its decoded copy, 0.01-0.03 Å apart, to primitive cells of
    different sizes (5 of 460 held-out MP Fe-O supercells); with the default matcher those never fit.
    Without the primitive reduction (``primitive_cell=False``), a supercell and the grammar's
    conventional cell of equal atom count but different lattices never fit either (mp-1271068).
    Measured by ``benchmarks/bench_crystal_equality.py`` on the 103 ordered bundled MP structures (as
    is, atoms moved 0.01-0.03 Å, 2x1x1 supercells with atoms moved up to 0.24 Å; 820 pairs): default
    matcher 813/820, ``primitive_cell=False, attempt_supercell=True`` 817/820, this one 820/820; all three
    match none of 151 genuinely different structures (a stretched x1.6, two sites' species swapped).
    """
    return _MATCHER.fit(a.structure, b.structure)


_MATCHER = StructureMatcher(
    ltol=MATCH_LTOL, stol=MATCH_STOL, angle_tol=MATCH_ANGLE_TOL, comparator=ElementComparator(),
    primitive_cell=True, attempt_supercell=True,
)


def _cell_key(cell: SymmetricCell) -> tuple:
    orbits = tuple((o.element, o.multiplicity, o.letter, o.coordinate) for o in cell.orbits)
    return -cell.number, cell.free_parameters, orbits


def _stable_cell(structure: Structure, config: CrystalGrammarConfig) -> tuple[SymmetricCell, ExpandedCell]:
    """The binned cell whose own decoding re-encodes to itself (what makes write(parse(t)) == t).

    Binning moves a crystal by a hair, and a crystal on a tolerance edge can then standardize
    differently: a higher space group once the distortion that broke it is binned away, or the other
    of two near-equal reduced triclinic cells. So the map cell -> decode -> standardize -> bin is
    iterated until it repeats; the text is the smallest cell of the cycle it ends in. Decoding that
    cell lands in the same cycle, hence the same text. Normally the cycle is one cell: one extra
    spglib call, as dear as the first (spglib's Wyckoff assignment dominates both, most in Fm-3m), and not
    redundant: it changes the cell for 23 of the 81 bundled ordered MP crystals once their atoms are moved
    0.02 Å (``benchmarks/bench_crystal_write.py``, which also prints the ceiling this call sets on ingest
    against the pymatgen parse + spglib floor).
    """
    cell = quantize(standardize(structure, config.symprecs, config.angle_tolerance))
    visited: list[SymmetricCell] = []
    expansions: dict[SymmetricCell, ExpandedCell] = {}  # each cell expanded once
    while cell not in visited:
        if len(visited) == MAX_REFINEMENTS:
            raise InvalidStructure(f"symmetric description did not settle in {MAX_REFINEMENTS} re-standardizings")
        visited.append(cell)
        expanded = expansions[cell] = expand_cell(cell)
        # spglib reads the expansion's arrays (no Structure; the written cell's contacts come from them too)
        cell = quantize(standardize_cell(expanded.spglib_cell(), config.symprecs, config.angle_tolerance,
                                         expanded.structure))
    best = min(visited[visited.index(cell):], key=_cell_key)
    return best, expansions[best]


def _contacts(structure: Structure, indices: list[int], config: CrystalGrammarConfig) -> list[tuple[Contact, ...]]:
    return site_contacts(
        structure, indices, tolerance=config.contact_tolerance, cutoff=config.contact_cutoff, order=element_order
    )


def _proportional(a: Counter[str], b: Counter[str]) -> bool:
    """Same elements in the same ratios: exactly when pymatgen reduces both to the same composition
    (``reduce_counts`` divides integer counts by their gcd, or half of it for a special formula like K2O2,
    so the reduced composition is a one-to-one function of the counts' ratios), without building two
    ``Composition`` objects per crystal."""
    total_a, total_b = sum(a.values()), sum(b.values())
    return a.keys() == b.keys() and all(a[el] * total_b == b[el] * total_a for el in a)


def write_crystal(crystal: Crystal, config: CrystalGrammarConfig = DEFAULT_CRYSTAL_CONFIG) -> str:
    where = f"{crystal.source_id}: " if crystal.source_id else ""
    try:
        cell, expanded = _stable_cell(crystal.structure, config)
    except (OrbitError, InvalidStructure) as exc:
        raise InvalidStructure(f"{where}{exc}") from exc
    composition = reduced_composition(cell)
    source = Counter(_element(i, s.specie, where) for i, s in enumerate(crystal.structure))
    if not _proportional(cell_counts(cell), source):  # spglib or the grid changed the atoms: never write such a text
        raise InvalidStructure(
            f"{where}standardized cell has composition {composition}, the input {reduce_counts(source)}"
        )
    if max(composition.values()) > MAX_COUNT:
        raise InvalidStructure(f"{where}reduced formula {composition} has a count above <n{MAX_COUNT}>")
    contacts = cell_contacts(
        expanded.lattice, expanded.cart_coords(), expanded.species, expanded.representatives,
        tolerance=config.contact_tolerance, cutoff=config.contact_cutoff, order=element_order,
    )
    return format_crystal(cell, composition, contacts)


def _decode(parsed: ParsedCrystal) -> tuple[Structure, list[int]]:
    try:
        structure, representatives = expand(parsed.cell)
    except OrbitError as exc:
        at = parsed.site_positions[exc.orbit_index]
        raise parsed.stream.error(exc.reason, InvalidStructure, at=at) from exc
    decoded = reduced_composition(parsed.cell)
    if decoded != dict(parsed.composition):
        raise parsed.stream.error(
            f"the sites give the reduced composition {decoded}, the header says {dict(parsed.composition)}",
            InvalidStructure, at=parsed.composition_position,
        )
    return structure, representatives


def parse_crystal(text: str) -> Crystal:
    structure, _ = _decode(read_crystal(text))
    return Crystal(structure)


def contacts_consistent(
    crystal: Crystal, text: str, config: CrystalGrammarConfig = DEFAULT_CRYSTAL_CONFIG
) -> float:
    """Fraction of the text's contact neighbours that ``crystal`` reproduces within ±1 distance bin.

    Each text site is paired with the nearest same-element atom of the crystal's own (unbinned)
    standardized cell, so the text must be in that setting (e.g. written from this crystal). A text
    with no contacts has nothing to contradict: 1.0.
    """
    parsed = read_crystal(text)
    decoded, representatives = _decode(parsed)
    standard = standardize(crystal.structure, config.symprecs, config.angle_tolerance)
    reference = Structure(Lattice(standard.lattice), standard.atomic_numbers.tolist(), standard.fractions)
    nearest: dict[int, int] = {}  # text site -> nearest same-element atom of the reference cell
    for k, (orbit, index) in enumerate(zip(parsed.cell.orbits, representatives, strict=True)):
        same = np.flatnonzero(standard.atomic_numbers == Element(orbit.element).Z)
        if len(same):  # else the crystal lacks the element: that site reproduces nothing
            distances = reference.lattice.get_all_distances(decoded.frac_coords[index], standard.fractions[same])
            nearest[k] = int(same[np.argmin(distances[0])])
    contacts = dict(zip(nearest, _contacts(reference, list(nearest.values()), config), strict=True))
    found = [contacts.get(k, ()) for k in range(len(parsed.cell.orbits))]
    matched, total = reproduced_fraction(list(parsed.contacts), found)
    return matched / total if total else 1.0
