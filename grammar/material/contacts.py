"""Neighbour contacts of a crystal site: ``[El]<nK><dD.DD>`` groups after each site of the grammar.

A contact group says "K neighbours of element El at the distance of bin D". Neighbours follow pymatgen's
``MinimumDistanceNN``: the nearest neighbour plus every neighbour within ``(1 + tol)`` of its distance.
Contacts are informative tokens (they teach a model which atoms touch); decoding never needs them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Lattice, Structure
from pymatgen.optimization.neighbors import find_points_in_spheres

from grammar.errors import InvalidStructure
from grammar.material.tokens import CONTACT_BINS, count_token

NEIGHBOUR_TOLERANCE = 1e-8  # Structure.get_neighbor_list's numerical_tol default


@dataclass(frozen=True, slots=True)
class Contact:
    element: str
    count: int
    distance_bin: int  # index into CONTACT_BINS

    def text(self) -> str:
        return f"[{self.element}]{count_token(self.count)}{CONTACT_BINS.token_at(self.distance_bin)}"


def site_contacts(
    structure: Structure, indices: list[int], *, tolerance: float, cutoff: float, order: Callable[[str], object]
) -> list[tuple[Contact, ...]]:
    """Contact groups of each site in ``indices``, sorted by distance bin, then element (``order`` key).

    The neighbour rule is ``MinimumDistanceNN``'s (nearest, plus all within ``(1 + tolerance)`` of it),
    applied to pymatgen's array neighbour list: ``MinimumDistanceNN.get_nn_info`` builds a Python
    object for every atom within the cutoff (~150 at 8 Å), ten times the cost of the whole encoding
    otherwise. tests/grammar/test_material.py checks the two agree on every fixture crystal.
    """
    symbols = [site.specie.symbol for site in structure]
    return cell_contacts(structure.lattice, structure.cart_coords, symbols, indices, tolerance=tolerance,
                         cutoff=cutoff, order=order)


def cell_contacts(
    lattice: Lattice, cart_coords: np.ndarray, symbols: list[str], indices: list[int], *, tolerance: float,
    cutoff: float, order: Callable[[str], object],
) -> list[tuple[Contact, ...]]:
    """``site_contacts`` of a cell given as arrays, without a ``Structure`` (writing needs none otherwise).

    ``cart_coords`` must be what ``Structure.cart_coords`` gives for the cell (one ``lattice`` product per
    site, as ``PeriodicSite.coords`` computes it): the neighbour search is then the one
    ``Structure.get_neighbor_list`` runs (``find_points_in_spheres``, same arguments, same self-pair rule),
    so the distances, hence the bins, are the same to the last bit.
    """
    centers_at = np.ascontiguousarray(cart_coords[indices], dtype=float)
    centers, neighbours, images, distances = find_points_in_spheres(
        np.ascontiguousarray(cart_coords, dtype=float), centers_at, r=cutoff,
        pbc=np.ascontiguousarray(lattice.pbc, dtype=np.int64),
        lattice=np.ascontiguousarray(lattice.matrix, dtype=float), tol=NEIGHBOUR_TOLERANCE,
    )
    itself = (neighbours == np.asarray(indices)[centers]) & ~images.any(axis=1)  # the site is its own point
    # get_neighbor_list's own exclude_self rule, kept for identical neighbour lists (it compares a centre's
    # position in ``indices`` with an atom index, so it drops nothing the rule above keeps)
    itself |= (centers == neighbours) & (distances <= NEIGHBOUR_TOLERANCE)
    centers, neighbours, distances = centers[~itself], neighbours[~itself], distances[~itself]
    result = []
    for k, index in enumerate(indices):
        mine = centers == k
        if not mine.any():
            result.append(())
            continue
        near = distances[mine]
        keep = near < (1 + tolerance) * near.min()
        contacts = near[keep]
        outside = np.flatnonzero(~CONTACT_BINS.contained(contacts))
        if len(outside):
            raise InvalidStructure(
                f"site {index} ({symbols[index]}) has a neighbour at {contacts[outside[0]]:.3f} Å, outside the "
                f"{CONTACT_BINS.lowest:.2f}-{CONTACT_BINS.highest:.2f} Å of the contact bins"
            )
        groups = Counter(zip(CONTACT_BINS.indices(contacts).tolist(),
                             [symbols[j] for j in neighbours[mine][keep].tolist()], strict=True))
        ordered = sorted(groups.items(), key=lambda item: (item[0][0], order(item[0][1])))
        result.append(tuple(Contact(element, count, bin_index) for (bin_index, element), count in ordered))
    return result


def reproduced_fraction(
    expected: list[tuple[Contact, ...]], found: list[tuple[Contact, ...]]
) -> tuple[int, int]:
    """(neighbours of ``expected`` matched in ``found`` within ±1 bin, neighbours of ``expected``).

    Matching is per neighbour, not per group: a group of 4 that sits on a bin edge may legitimately read
    as 2 + 2 in adjacent bins, and that is still 4 reproduced neighbours.
    """
    matched = total = 0
    for wanted, available in zip(expected, found, strict=True):
        pool = Counter({(c.element, c.distance_bin): c.count for c in available})
        for contact in wanted:
            total += contact.count
            need = contact.count
            for shift in (0, -1, 1):
                key = (contact.element, contact.distance_bin + shift)
                take = min(need, pool[key])
                pool[key] -= take
                need -= take
            matched += contact.count - need
    return matched, total
