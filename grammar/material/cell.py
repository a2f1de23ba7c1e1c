"""The symmetric cell a crystal text describes, and the two maps around it.

``quantize``: spglib's standardized cell -> bins and grid (lattice free parameters, one grid
representative per Wyckoff orbit). ``expand``: that description -> the full conventional cell as a
pymatgen ``Structure``. Writing runs both, so a text is always computed from exactly the structure
its own decoding gives back (which is what makes ``write(parse(text)) == text``).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from pymatgen.core import Composition, Element, Lattice, Structure

from grammar.errors import InvalidStructure
from grammar.material.symmetry import (
    GRID,
    StandardCell,
    crystal_system,
    grid_orbit,
    orbit_points,
    space_group_operations,
)
from grammar.material.tokens import ANGLE_BINS, LENGTH_BINS, WYCKOFF_LETTERS

PARAMETER_NAMES = ("a", "b", "c", "alpha", "beta", "gamma")
# Indices into PARAMETER_NAMES of the parameters a crystal system leaves free (spglib's standard
# settings: monoclinic b-unique, trigonal on hexagonal axes).
FREE_PARAMETERS = {
    "triclinic": (0, 1, 2, 3, 4, 5), "monoclinic": (0, 1, 2, 4), "orthorhombic": (0, 1, 2),
    "tetragonal": (0, 2), "trigonal": (0, 2), "hexagonal": (0, 2), "cubic": (0,),
}


def parameter_bins(index: int):
    return LENGTH_BINS if index < 3 else ANGLE_BINS


def full_parameters(number: int, free: tuple[float, ...]) -> tuple[float, ...]:
    """(a, b, c, alpha, beta, gamma) from a crystal system's free parameters."""
    system = crystal_system(number)
    values = dict(zip(FREE_PARAMETERS[system], free, strict=True))
    a = values[0]
    b, c = values.get(1, a), values.get(2, a)
    gamma = 120.0 if system in ("trigonal", "hexagonal") else values.get(5, 90.0)
    return a, b, c, values.get(3, 90.0), values.get(4, 90.0), gamma


@cache
def element_order(symbol: str) -> tuple[float, str]:
    """pymatgen's formula order (Pauling electronegativity); elements without one (noble gases) last."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns that He, Ne, Ar have no electronegativity
        x = Element(symbol).X
    return (x if math.isfinite(x) else math.inf, symbol)


@cache
def element_symbol(z: int) -> str:
    return Element.from_Z(z).symbol


@cache
def atomic_number(symbol: str) -> int:
    return Element(symbol).Z


@dataclass(frozen=True, slots=True)
class Orbit:
    element: str
    multiplicity: int
    letter: str
    coordinate: tuple[int, int, int]  # grid indices, K/1200
    # All images of the coordinate (``orbit_points``) when ``quantize`` computed them, so ``expand`` need not.
    images: np.ndarray | None = field(default=None, compare=False, hash=False, repr=False)

    def sort_key(self) -> tuple:
        return element_order(self.element), WYCKOFF_LETTERS.index(self.letter), self.coordinate


@dataclass(frozen=True, slots=True)
class SymmetricCell:
    number: int
    free_parameters: tuple[float, ...]  # bin values
    orbits: tuple[Orbit, ...]


class OrbitError(ValueError):
    """An orbit that does not expand as its Wyckoff token says (the caller knows where it was written)."""

    def __init__(self, orbit_index: int, reason: str) -> None:
        self.orbit_index = orbit_index
        self.reason = reason
        super().__init__(reason)


def quantize(standard: StandardCell) -> SymmetricCell:
    """Bin the free lattice parameters and put one representative per orbit on the grid."""
    free = []
    parameters = Lattice(standard.lattice).parameters
    for index in FREE_PARAMETERS[crystal_system(standard.number)]:
        value = float(parameters[index])
        bins = parameter_bins(index)
        if not bins.contains(value):
            raise InvalidStructure(
                f"conventional lattice {PARAMETER_NAMES[index]} = {value:.3f} is outside the bins' "
                f"{bins.lowest:.2f}..{bins.highest:.2f}"
            )
        free.append(bins.value(bins.index(value)))
    operations = space_group_operations(standard.number)
    orbits = []
    for i, orbit in enumerate(standard.orbits):
        images = grid_orbit(orbit, operations, standard.lattice)
        if images is None:
            raise OrbitError(
                i, f"no grid point near {orbit.fraction} keeps Wyckoff multiplicity {orbit.multiplicity}"
            )
        symbol = element_symbol(orbit.atomic_number)
        orbits.append(Orbit(symbol, orbit.multiplicity, orbit.letter, tuple(int(k) for k in images[0]), images))
    return SymmetricCell(standard.number, tuple(free), tuple(sorted(orbits, key=Orbit.sort_key)))


@dataclass(frozen=True, slots=True)
class ExpandedCell:
    """The conventional cell of a ``SymmetricCell`` as arrays: what spglib reads, without a pymatgen ``Structure``.

    Writing standardizes each visited cell's expansion once more (``crystal._stable_cell``) and takes the
    contacts of the cell it writes from these arrays too (``contacts.cell_contacts``): no ``Structure``.
    """

    lattice: Lattice
    species: list[str]
    fractions: np.ndarray  # (n, 3), exact multiples of 1/GRID
    representatives: list[int]  # per orbit, the index of its representative site

    def spglib_cell(self) -> tuple[np.ndarray, np.ndarray, list[int]]:
        return self.lattice.matrix, self.fractions, [atomic_number(el) for el in self.species]

    def structure(self) -> Structure:
        return Structure(self.lattice, self.species, self.fractions)

    def cart_coords(self) -> np.ndarray:
        """``self.structure().cart_coords`` without the ``Structure``: one lattice product per site, as
        ``PeriodicSite.coords`` computes it (a single (n, 3) product may round differently in the last bit)."""
        return np.array([self.lattice.get_cartesian_coords(f) for f in self.fractions])


def expand_cell(cell: SymmetricCell) -> ExpandedCell:
    """The conventional cell and, per orbit, the index of its representative site in it."""
    operations = space_group_operations(cell.number)
    species: list[str] = []
    blocks: list[np.ndarray] = []
    representatives: list[int] = []
    seen: dict[tuple[int, ...], int] = {}
    for i, orbit in enumerate(cell.orbits):
        # the orbit of any of its points is the same sorted set: quantize's images serve as they are
        points = orbit.images if orbit.images is not None else orbit_points(
            np.array(orbit.coordinate, dtype=np.int64), operations
        )
        if len(points) != orbit.multiplicity:
            raise OrbitError(
                i, f"{orbit.element} at {orbit.coordinate} (/{GRID}) has {len(points)} images in space group "
                f"{cell.number}, but its Wyckoff token says {orbit.multiplicity}"
            )
        for point in map(tuple, points.tolist()):
            if point in seen:
                raise OrbitError(i, f"{orbit.element} site overlaps orbit {seen[point]} at {point}")
            seen[point] = i
        own_row = int(np.flatnonzero((points == orbit.coordinate).all(axis=1))[0])
        representatives.append(len(species) + own_row)
        species += [orbit.element] * len(points)
        blocks.append(points)
    lattice = Lattice.from_parameters(*full_parameters(cell.number, cell.free_parameters))
    return ExpandedCell(lattice, species, np.concatenate(blocks) / GRID, representatives)


def expand(cell: SymmetricCell) -> tuple[Structure, list[int]]:
    """The conventional cell as a ``Structure`` and, per orbit, the index of its representative site in it."""
    expanded = expand_cell(cell)
    return expanded.structure(), expanded.representatives


def reduce_counts(counts: Counter[str]) -> dict[str, int]:
    """pymatgen's reduced composition (it keeps peroxides and the like whole: K2O2, not KO), in formula order."""
    reduced = Composition(counts).reduced_composition
    return {el: round(reduced[el]) for el in sorted(counts, key=element_order)}


def cell_counts(cell: SymmetricCell) -> Counter[str]:
    """Atoms per element in the conventional cell."""
    counts: Counter[str] = Counter()
    for orbit in cell.orbits:
        counts[orbit.element] += orbit.multiplicity
    return counts


def reduced_composition(cell: SymmetricCell) -> dict[str, int]:
    return reduce_counts(cell_counts(cell))
