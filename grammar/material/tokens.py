"""The discrete tokens of the crystal grammar: space groups, Wyckoff positions and numeric bins.

No raw floats ever appear in grammar text. Every number is a bin token whose value is exact
(``value = index * step + lowest``), so writing and reading a bin is lossless on the bin grid.

| token        | meaning                                  | grid                               |
|--------------|------------------------------------------|------------------------------------|
| ``<sgN>``    | space group number N (1..230)            |                                    |
| ``<wMX>``    | Wyckoff position, multiplicity M letter X | conventional-cell multiplicities   |
| ``<nK>``     | a count K (formula units, neighbours)    | 1..192                             |
| ``<L5.44>``  | lattice length in Å                      | 0.02 Å from 0.50 to 100.00          |
| ``<A90.00>`` | lattice angle in degrees                 | 0.25° from 0.00 to 180.00           |
| ``<fK>``     | fractional coordinate K/1200             | 1200 steps: 1/2, 1/3, 1/4, 1/6, 1/8 exact |
| ``<d2.45>``  | neighbour-contact distance in Å          | 0.05 Å from 0.50 to 8.00            |

Elements are written as neutral SMILES bracket atoms (``[Fe]``, ``[O]``): the very tokens molecules
use, so the element vocabulary is shared between molecules and materials.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

WYCKOFF_MULTIPLICITIES = (1, 2, 3, 4, 6, 8, 9, 12, 16, 18, 24, 32, 36, 48, 64, 96, 192)
# spglib writes the 27th Wyckoff letter of Pmmm (alpha) as 'A'.
WYCKOFF_LETTERS = "abcdefghijklmnopqrstuvwxyzA"
MAX_COUNT = 192
COORDINATE_STEPS = 1200


@dataclass(frozen=True, slots=True)
class Bins:
    """A uniform grid of values written as ``<{prefix}{value:.{decimals}f}>`` tokens."""

    prefix: str
    lowest: float
    step: float
    count: int
    decimals: int

    def index(self, value: float) -> int:
        """Nearest grid index; values beyond the grid clip to its ends (callers check the range)."""
        return min(self.count - 1, max(0, round((value - self.lowest) / self.step)))

    def value(self, index: int) -> float:
        return round(self.lowest + index * self.step, self.decimals)

    def token(self, value: float) -> str:
        return self.token_at(self.index(value))

    def token_at(self, index: int) -> str:
        return f"<{self.prefix}{self.value(index):.{self.decimals}f}>"

    @property
    def highest(self) -> float:
        return self.value(self.count - 1)

    def contains(self, value: float) -> bool:
        return self.lowest - self.step / 2 <= value <= self.highest + self.step / 2

    def indices(self, values: np.ndarray) -> np.ndarray:
        """``index`` of every value at once: the same float operations, and ``np.rint`` rounds halves to even
        as ``round`` does, so each index equals ``index(value)``."""
        return np.clip(np.rint((values - self.lowest) / self.step), 0, self.count - 1).astype(np.int64)

    def contained(self, values: np.ndarray) -> np.ndarray:
        """``contains`` of every value at once (NaN is outside, as there)."""
        return (self.lowest - self.step / 2 <= values) & (values <= self.highest + self.step / 2)

    def tokens(self) -> list[str]:
        return [self.token_at(i) for i in range(self.count)]


LENGTH_BINS = Bins("L", 0.50, 0.02, 4976, 2)  # 0.50 .. 100.00 Å
ANGLE_BINS = Bins("A", 0.0, 0.25, 721, 2)  # 0.00 .. 180.00°
CONTACT_BINS = Bins("d", 0.50, 0.05, 151, 2)  # 0.50 .. 8.00 Å


def space_group_token(number: int) -> str:
    if not 1 <= number <= 230:
        raise ValueError(f"space group number {number} is outside 1..230")
    return f"<sg{number}>"


def wyckoff_token(multiplicity: int, letter: str) -> str:
    return f"<w{multiplicity}{letter}>"


def count_token(count: int) -> str:
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count {count} is outside 1..{MAX_COUNT}")
    return f"<n{count}>"


def coordinate_index(fraction: float) -> int:
    """Grid index of a fractional coordinate, wrapped into [0, 1)."""
    return round((fraction % 1.0) * COORDINATE_STEPS) % COORDINATE_STEPS


def coordinate_token(fraction: float) -> str:
    return f"<f{coordinate_index(fraction)}>"


@lru_cache(maxsize=1)
def material_tokens() -> tuple[str, ...]:
    """Every material-grammar token, in vocabulary order."""
    tokens: list[str] = [space_group_token(n) for n in range(1, 231)]
    tokens += [wyckoff_token(m, x) for m in WYCKOFF_MULTIPLICITIES for x in WYCKOFF_LETTERS]
    tokens += [count_token(k) for k in range(1, MAX_COUNT + 1)]
    tokens += LENGTH_BINS.tokens() + ANGLE_BINS.tokens()
    tokens += [f"<f{k}>" for k in range(COORDINATE_STEPS)]
    tokens += CONTACT_BINS.tokens()
    return tuple(tokens)
