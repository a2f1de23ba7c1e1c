"""Which crystal equality for round trip and dedup: three StructureMatcher settings, measured.

    python benchmarks/bench_crystal_equality.py [--data tests/data/mp] [--limit N]

For every ordered Materials Project structure in the bundled samples (pymatgen Structure JSONs, Si
CIF, MP-20 CSV CIFs, emmet documents) the source and its decoded crystal (write -> parse) are compared
with each setting, on the structure as is, with atoms moved 0.01/0.02/0.03 Å, and as a 2x1x1 supercell
with atoms moved 0.02, 0.1, 0.2 and 0.24 Å (the low-symmetry supercells where pymatgen's primitive reduction,
0.25 Å tolerance, can pick different primitive cells for two copies a hair apart). A match is right
here: every miss is a false failure. Then two genuinely different structures per source, which must
NOT match: the cell stretched x1.6 along a (beyond ltol 0.2 after volume scaling) and, where two
elements each hold two or more sites, the species of two sites swapped. ``--limit N`` uses the first N
structures (said in the output). The chosen setting is the one ``grammar.material.crystals_match`` uses.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from bench_crystal_roundtrip import ROOT, _random_shifts, raw_inputs
from pymatgen.analysis.structure_matcher import ElementComparator, StructureMatcher
from pymatgen.core import Structure

from grammar.material import Crystal, parse_crystal, write_crystal
from grammar.material.crystal import MATCH_ANGLE_TOL, MATCH_LTOL, MATCH_STOL

SETTINGS = {
    "default (primitive_cell=True)": dict(primitive_cell=True, attempt_supercell=False),
    "primitive_cell=False, attempt_supercell=True": dict(primitive_cell=False, attempt_supercell=True),
    "primitive_cell=True, attempt_supercell=True (chosen)": dict(primitive_cell=True, attempt_supercell=True),
}


# Up to just under pymatgen's 0.25 Å primitive-reduction tolerance, where two copies a hair apart can reduce
# to different primitive cells.
SUPERCELL_SHIFTS = (0.02, 0.1, 0.2, 0.24)


def moved(structure: Structure, amplitude: float, rng: np.random.Generator) -> Structure:
    coords = structure.cart_coords + _random_shifts(rng, len(structure), amplitude)
    return Structure(structure.lattice, structure.species, coords, coords_are_cartesian=True)


def supercell(structure: Structure) -> Structure:
    bigger = structure.copy()
    bigger.make_supercell([2, 1, 1])
    return bigger


def same_crystal_variants(structure: Structure, rng: np.random.Generator) -> list[tuple[str, Structure]]:
    variants = [("as is", structure)] + [(f"moved {a} Å", moved(structure, a, rng)) for a in (0.01, 0.02, 0.03)]
    if len(structure) <= 30:  # bigger supercells only cost time
        variants += [(f"2x1x1 moved {a} Å", moved(supercell(structure), a, rng)) for a in SUPERCELL_SHIFTS]
    return variants


# The matcher scales volumes (scale=True): a cell stretched x1.6 along a is a x1.37 / x0.86 length change after
# scaling, beyond ltol 0.2 (x1.3 stays inside it: 1.19 / 0.92).
STRAIN = 1.6


def different_crystals(structure: Structure) -> list[tuple[str, Structure]]:
    strained = structure.copy()
    strained.lattice = strained.lattice.matrix * np.array([[STRAIN], [1.0], [1.0]])
    out = [(f"a strained x{STRAIN}", strained)]
    elements = [site.specie for site in structure]
    first = elements[0]
    other = next((i for i, e in enumerate(elements) if e != first), None)
    # One atom of each kind may be a translation of the same crystal when swapped (NaCl): need two of each.
    if other is not None and min(elements.count(first), elements.count(elements[other])) >= 2:
        swapped = structure.copy()
        swapped.replace(0, elements[other])
        swapped.replace(other, first)
        out.append(("two sites' species swapped", swapped))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "tests/data/mp")
    parser.add_argument("--limit", type=int, default=0, help="only the first N structures (a smaller input)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # pymatgen CIF rounding notes, spglib deprecation notes
    mp, _ = raw_inputs(args.data)
    structures = [(name, s) for name, s in ((name, read()) for name, read in mp) if s.is_ordered]
    if args.limit and args.limit < len(structures):
        print(f"smaller input: the first {args.limit} of {len(structures)} ordered structures (--limit)")
        structures = structures[: args.limit]
    matchers = {label: StructureMatcher(MATCH_LTOL, MATCH_STOL, MATCH_ANGLE_TOL, comparator=ElementComparator(), **kw)
                for label, kw in SETTINGS.items()}
    rng = np.random.default_rng(0)
    pairs: dict[str, int] = defaultdict(int)
    misses: dict[str, dict[str, list[str]]] = {label: defaultdict(list) for label in matchers}
    seconds: dict[str, float] = defaultdict(float)
    false_matches: dict[str, list[str]] = {label: [] for label in matchers}
    different = 0
    for name, structure in structures:
        for kind, variant in same_crystal_variants(structure, rng):
            decoded = parse_crystal(write_crystal(Crystal(variant, name))).structure
            pairs[kind] += 1
            for label, matcher in matchers.items():
                start = time.perf_counter()
                if not matcher.fit(variant, decoded):
                    misses[label][kind].append(name)
                seconds[label] += time.perf_counter() - start
        decoded = parse_crystal(write_crystal(Crystal(structure, name))).structure
        for kind, other in different_crystals(structure):
            different += 1
            for label, matcher in matchers.items():
                if matcher.fit(other, decoded):
                    false_matches[label].append(f"{name} ({kind})")
    total = sum(pairs.values())
    print(f"{len(structures)} ordered MP structures; {total} same-crystal pairs "
          f"({', '.join(f'{k}: {n}' for k, n in pairs.items())}); {different} different-crystal pairs")
    for label in matchers:
        missed = sum(len(v) for v in misses[label].values())
        print(f"[{label}] same crystal matched {total - missed}/{total}; different crystal matched "
              f"{len(false_matches[label])}/{different}; matcher time {seconds[label]:.1f} s")
        for kind, names in misses[label].items():
            print(f"    missed ({kind}): {', '.join(names)}")
        for line in false_matches[label]:
            print(f"    false match: {line}")


if __name__ == "__main__":
    main()
