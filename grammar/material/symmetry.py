"""Symmetry for the crystal grammar: spglib standardization, Wyckoff orbits, exact orbit expansion.

Encoding and decoding must use the *same* setting of each space group. spglib standardizes every
crystal to the default (smallest) Hall number of its space-group type, and
``spglib.get_symmetry_from_database(hall_number)`` returns exactly that setting's operations, centering
included; pymatgen's ``SpaceGroup`` picks other origin choices for some groups, so it is not used here.

Coordinates live on the grammar's 1/1200 grid (``tokens.COORDINATE_STEPS``) and every translation of
every space-group operation is a multiple of 1/1200 (1/2, 1/3, 1/4, 1/6, 1/8), so orbits are expanded in
integer arithmetic: images are exact and duplicates under periodic boundaries are removed exactly,
with no distance tolerance to tune.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import spglib
from pymatgen.core import Structure

from grammar.material.tokens import COORDINATE_STEPS

GRID = COORDINATE_STEPS
# Neighbouring grid points tried when rounding a special position breaks its constraint (x, 2x, z).
_GRID_OFFSETS = np.array(list(itertools.product((0, -1, 1), repeat=3)), dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Operations:
    """A space group's operations in integer form: ``x' = R x + t`` with x and t in grid units."""

    rotations: np.ndarray  # (n, 3, 3) int
    translations: np.ndarray  # (n, 3) int


@lru_cache(maxsize=1)
def default_hall_numbers() -> dict[int, int]:
    """Space-group number -> the Hall number spglib standardizes to (the smallest of that type)."""
    table: dict[int, int] = {}
    for hall_number in range(1, 531):
        table.setdefault(spglib.get_spacegroup_type(hall_number).number, hall_number)
    return table


@lru_cache(maxsize=230)
def space_group_operations(number: int) -> Operations:
    symmetry = spglib.get_symmetry_from_database(default_hall_numbers()[number])
    translations = symmetry["translations"] * GRID
    rounded = np.rint(translations).astype(np.int64)
    if not np.allclose(translations, rounded, atol=1e-6):  # guards the exact-grid claim above
        raise AssertionError(f"space group {number} has translations off the 1/{GRID} grid")
    return Operations(symmetry["rotations"].astype(np.int64), rounded % GRID)


def orbit_points(point: np.ndarray, operations: Operations) -> np.ndarray:
    """All distinct images of one grid point, sorted (the first is the lexicographically smallest).

    Each image is packed into one integer (x * GRID + y) * GRID + z, whose order is the lexicographic
    order of (x, y, z) since every coordinate is below GRID: a 1-D ``np.unique`` instead of the row-wise
    one (``axis=0``), which costs several times more and ran ~10 times per crystal in quantize/expand.
    """
    images = (operations.rotations @ point + operations.translations) % GRID
    packed = np.unique((images[:, 0] * GRID + images[:, 1]) * GRID + images[:, 2])
    return np.stack((packed // (GRID * GRID), packed // GRID % GRID, packed % GRID), axis=1)


def crystal_system(number: int) -> str:
    for last, name in ((2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"), (142, "tetragonal"),
                       (167, "trigonal"), (194, "hexagonal"), (230, "cubic")):
        if number <= last:
            return name
    raise ValueError(f"space group number {number} is outside 1..230")


@dataclass(frozen=True, slots=True)
class FloatOrbit:
    """One Wyckoff orbit of a standardized cell, before its coordinates are put on the grid."""

    atomic_number: int
    multiplicity: int
    letter: str
    fraction: np.ndarray  # fractional coordinates of one orbit member


@dataclass(frozen=True, slots=True)
class StandardCell:
    """spglib's conventional standardized cell, described orbit by orbit."""

    number: int
    lattice: np.ndarray  # (3, 3) row vectors
    orbits: tuple[FloatOrbit, ...]
    symprec: float | None  # the precision that worked; None: the P1 fallback
    atomic_numbers: np.ndarray  # every atom of the cell (for contact checks against the source)
    fractions: np.ndarray


SpglibCell = tuple[np.ndarray, np.ndarray, list[int]]  # lattice rows, fractional coordinates, atomic numbers


def spglib_cell(structure: Structure) -> SpglibCell:
    # The cell carries atomic numbers only: the grammar writes neither oxidation states nor magnetic
    # moments, so they must not split orbits (SpacegroupAnalyzer would pass magmoms on to spglib).
    return structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure]


def _dataset(cell: SpglibCell, symprec: float, angle_tolerance: float):
    with warnings.catch_warnings():
        # spglib 2.x warns on every call that failures will raise in future; both behaviours are handled.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return spglib.get_symmetry_dataset(cell, symprec=symprec, angle_tolerance=angle_tolerance)
        except spglib.SpglibError:
            return None


def _from_dataset(dataset, symprec: float) -> StandardCell:
    # Each standardized atom inherits orbit and Wyckoff letter from an input atom that maps to the
    # same primitive-cell atom (translation-equivalent, so the same orbit).
    input_of_primitive: dict[int, int] = {}
    for i, p in enumerate(dataset.mapping_to_primitive):
        input_of_primitive.setdefault(int(p), i)
    inputs = [input_of_primitive[int(p)] for p in dataset.std_mapping_to_primitive]
    members: dict[int, list[int]] = {}
    for std_index, input_index in enumerate(inputs):
        members.setdefault(int(dataset.crystallographic_orbits[input_index]), []).append(std_index)
    orbits = tuple(
        FloatOrbit(int(dataset.std_types[m[0]]), len(m), dataset.wyckoffs[inputs[m[0]]],
                   dataset.std_positions[m[0]])
        for m in members.values()
    )
    return StandardCell(dataset.number, np.asarray(dataset.std_lattice), orbits, symprec,
                        np.asarray(dataset.std_types), np.asarray(dataset.std_positions))


def _p1_cell(structure: Structure) -> StandardCell:
    reduced = structure.get_reduced_structure("niggli")
    numbers = np.array([site.specie.Z for site in reduced])
    orbits = tuple(FloatOrbit(int(z), 1, "a", f) for z, f in zip(numbers, reduced.frac_coords, strict=True))
    return StandardCell(1, reduced.lattice.matrix, orbits, None, numbers, reduced.frac_coords)


def standardize(structure: Structure, symprecs: tuple[float, ...], angle_tolerance: float) -> StandardCell:
    """The conventional standardized cell at the first precision spglib succeeds with, else P1."""
    return standardize_cell(spglib_cell(structure), symprecs, angle_tolerance, lambda: structure)


def standardize_cell(
    cell: SpglibCell, symprecs: tuple[float, ...], angle_tolerance: float, structure: Callable[[], Structure]
) -> StandardCell:
    """``standardize`` of a cell given as spglib's arrays; ``structure`` builds it as a ``Structure`` for
    the P1 fallback only (writing re-standardizes expanded cells, which never need one otherwise)."""
    for symprec in symprecs:
        dataset = _dataset(cell, symprec, angle_tolerance)
        if dataset is not None and dataset.hall_number == default_hall_numbers()[dataset.number]:
            return _from_dataset(dataset, symprec)
    return _p1_cell(structure())


def grid_orbit(orbit: FloatOrbit, operations: Operations, lattice: np.ndarray) -> np.ndarray | None:
    """The orbit on the grid, sorted (``orbit_points``; its first point is the representative written): that
    of the nearest grid point whose orbit keeps the Wyckoff multiplicity, or None if no grid point next to
    the position does.

    Plain rounding can break a special position's constraint (x = 0.16705 -> 200/1200 but 2x -> 401/1200),
    which would turn a 6-fold site into a 24-fold one; the neighbouring grid points repair that.
    """
    exact = np.asarray(orbit.fraction, dtype=float) % 1.0 * GRID
    base = np.rint(exact).astype(np.int64)
    candidates = base + _GRID_OFFSETS
    distances = np.linalg.norm(((candidates - exact) / GRID) @ lattice, axis=1)
    for index in np.argsort(distances, kind="stable"):
        points = orbit_points(candidates[index] % GRID, operations)
        if len(points) == orbit.multiplicity:
            return points
    return None
