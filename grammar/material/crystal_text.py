"""Reading and writing the tokens of a crystal text (the layout is documented in ``crystal.py``).

The reader checks syntax and token values (grid, bins, ranges) and reports each problem at its
character position; the geometry checks (multiplicities, composition) happen when the cell is expanded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from grammar.errors import InvalidStructure
from grammar.lexer import TokenStream
from grammar.material.cell import FREE_PARAMETERS, PARAMETER_NAMES, Orbit, SymmetricCell, parameter_bins
from grammar.material.contacts import Contact
from grammar.material.symmetry import GRID, crystal_system
from grammar.material.tokens import (
    CONTACT_BINS,
    MAX_COUNT,
    WYCKOFF_LETTERS,
    WYCKOFF_MULTIPLICITIES,
    Bins,
    count_token,
    space_group_token,
    wyckoff_token,
)
from grammar.molecule import element_symbols
from grammar.tags import MATERIAL_E, MATERIAL_S

_ELEMENT = re.compile(r"\[([A-Z][a-z]?)\]")
_WYCKOFF = re.compile(r"<w(\d+)([A-Za-z])>")


def format_crystal(
    cell: SymmetricCell, composition: dict[str, int], contacts: list[tuple[Contact, ...]]
) -> str:
    parts = [MATERIAL_S]
    parts += [f"[{el}]{count_token(n)}" for el, n in composition.items()]
    parts.append(space_group_token(cell.number))
    indices = FREE_PARAMETERS[crystal_system(cell.number)]
    parts += [parameter_bins(i).token(v) for i, v in zip(indices, cell.free_parameters, strict=True)]
    for orbit, groups in zip(cell.orbits, contacts, strict=True):
        parts.append(f"[{orbit.element}]{wyckoff_token(orbit.multiplicity, orbit.letter)}")
        parts += [f"<f{k}>" for k in orbit.coordinate]  # tokens.coordinate_token, from the grid index
        parts += [group.text() for group in groups]
    parts.append(MATERIAL_E)
    return "".join(parts)


@dataclass(frozen=True)
class ParsedCrystal:
    stream: TokenStream  # for errors that point into the text
    composition: tuple[tuple[str, int], ...]
    composition_position: int
    cell: SymmetricCell
    contacts: tuple[tuple[Contact, ...], ...]
    site_positions: tuple[int, ...]  # character offset of each site's element token


def _element(stream: TokenStream) -> str:
    token = stream.peek()
    match = _ELEMENT.fullmatch(token or "")
    if match is None or match.group(1) not in element_symbols():
        raise stream.error(f"expected an element token like [Fe], found {token!r}")
    stream.next()
    return match.group(1)


def _integer(stream: TokenStream, prefix: str, lowest: int, highest: int, what: str) -> int:
    token = stream.peek()
    match = re.fullmatch(rf"<{prefix}(\d+)>", token or "")
    if match is None or token != f"<{prefix}{int(match.group(1))}>":
        raise stream.error(f"expected {what} <{prefix}…>, found {token!r}")
    value = int(match.group(1))
    if not lowest <= value <= highest:
        raise stream.error(f"{what} {token} is outside {lowest}..{highest}")
    stream.next()
    return value


def _binned(stream: TokenStream, bins: Bins, what: str) -> int:
    """Index of a bin token; the token must be exactly one of the grid's."""
    token = stream.peek() or ""
    match = re.fullmatch(rf"<{bins.prefix}(\d+\.\d+)>", token)
    if match is None or bins.token(float(match.group(1))) != token:
        raise stream.error(f"expected {what} (a <{bins.prefix}…> bin token), found {token or None!r}")
    stream.next()
    return bins.index(float(match.group(1)))


def _wyckoff(stream: TokenStream) -> tuple[int, str]:
    token = stream.peek() or ""
    match = _WYCKOFF.fullmatch(token)
    if match is None or int(match.group(1)) not in WYCKOFF_MULTIPLICITIES or match[2] not in WYCKOFF_LETTERS:
        raise stream.error(f"expected a Wyckoff token <wMX>, found {token!r}")
    stream.next()
    return int(match.group(1)), match.group(2)


def _composition(stream: TokenStream) -> tuple[tuple[str, int], ...]:
    pairs: dict[str, int] = {}
    while (stream.peek() or "").startswith("["):
        at = stream.position
        element = _element(stream)
        if element in pairs:
            raise stream.error(f"element {element} appears twice in the composition", at=at)
        pairs[element] = _integer(stream, "n", 1, MAX_COUNT, "an element count")
    if not pairs:
        raise stream.error(f"expected the composition ([El]<nK> pairs) after {MATERIAL_S}")
    return tuple(pairs.items())


def read_crystal(text: str) -> ParsedCrystal:
    stream = TokenStream(text)
    stream.expect(MATERIAL_S)
    composition_position = stream.position
    composition = _composition(stream)
    number = _integer(stream, "sg", 1, 230, "a space group")
    free = []
    for index in FREE_PARAMETERS[crystal_system(number)]:
        bins = parameter_bins(index)
        free.append(bins.value(_binned(stream, bins, f"lattice {PARAMETER_NAMES[index]}")))
    orbits: list[Orbit] = []
    contacts: list[list[Contact]] = []
    positions: list[int] = []
    elements = {el for el, _ in composition}
    while not stream.accept(MATERIAL_E):
        if stream.at_end():
            raise stream.error(f"unterminated crystal: expected {MATERIAL_E}")
        at = stream.position
        element = _element(stream)
        if element not in elements:
            raise stream.error(f"element {element} is not in the composition", InvalidStructure, at=at)
        if (stream.peek() or "").startswith("<w"):
            multiplicity, letter = _wyckoff(stream)
            coordinate = tuple(_integer(stream, "f", 0, GRID - 1, f"coordinate {axis}") for axis in "xyz")
            orbits.append(Orbit(element, multiplicity, letter, coordinate))
            contacts.append([])
            positions.append(at)
        elif (stream.peek() or "").startswith("<n"):
            if not orbits:
                raise stream.error("a contact group comes before any site", at=at)
            count = _integer(stream, "n", 1, MAX_COUNT, "a neighbour count")
            contacts[-1].append(Contact(element, count, _binned(stream, CONTACT_BINS, "a contact distance")))
        else:
            raise stream.error(f"expected <wMX> (a site) or <nK> (a contact) after {element}")
    stream.expect_end()
    if not orbits:
        raise stream.error("a crystal needs at least one site", at=composition_position)
    return ParsedCrystal(
        stream, composition, composition_position, SymmetricCell(number, tuple(free), tuple(orbits)),
        tuple(tuple(c) for c in contacts), tuple(positions),
    )
