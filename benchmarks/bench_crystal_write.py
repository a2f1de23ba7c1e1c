"""Where crystal ingest time goes, against the bare-library floor measured in the same run, and the ceiling that
the grammar's re-encode proof puts on ``bench_ingest.py``'s "material" ratio.

    python benchmarks/bench_crystal_write.py [--rounds 3] [--cpu-time]

Inputs: those of bench_ingest's material row (the bundled MP-20 CSV CIFs and pymatgen Structure JSONs; the
disordered one is parsed, then skipped). Floor (as there): pymatgen parse + ``SpacegroupAnalyzer`` space group,
i.e. one ``spglib.get_symmetry_dataset`` per crystal. Rows, each the best of ``--rounds``:

- parse: the floor's pymatgen parse alone;
- spglib(input): the grammar's standardization of the input (the floor's spglib call);
- spglib(expanded): the grammar's second call, on the expanded binned cell. ``write_crystal`` iterates
  cell -> expand -> standardize -> bin until the cell repeats; that re-standardization is what makes
  ``write(parse(text)) == text``, and it changes the cell for a share of inputs (printed below, on copies of
  the inputs with every atom moved 0.02 Å), so it is not redundant;
- write_crystal: the whole writer; mp convert: the source's read + convert (parse, writer, keys).

ceiling = floor / (floor + spglib(expanded)): the ingest/floor ratio if the pipeline cost nothing beyond the
floor and that one extra spglib call. spglib's time is not spread evenly: its Wyckoff assignment
(``get_Wyckoff_notation`` in ``site_symmetry.c``) costs (Wyckoff letters tried) x (operations of the
conventional cell)^2 per orbit, ~4 ms per orbit in Fm-3m (192 operations), so the row per space group
shows where it goes.
"""

from __future__ import annotations

import argparse
import csv
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import spglib
from pymatgen.core import Structure
from pymatgen.io.cif import CifParser
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from grammar.material.cell import expand_cell, quantize
from grammar.material.crystal import DEFAULT_CRYSTAL_CONFIG, Crystal, write_crystal
from grammar.material.symmetry import spglib_cell, standardize
from pipeline.records import Reject
from pipeline.sources.mp import MpSource

DATA = Path(__file__).resolve().parents[1] / "tests/data/mp"
SYMPREC, ANGLE = DEFAULT_CRYSTAL_CONFIG.symprec, DEFAULT_CRYSTAL_CONFIG.angle_tolerance


def best(fn: Callable[[], object], rounds: int, clock: Callable[[], float]) -> float:
    seconds = float("inf")
    for _ in range(rounds):
        start = clock()
        fn()
        seconds = min(seconds, clock() - start)
    return seconds


def dataset(cell: tuple) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return spglib.get_symmetry_dataset(cell, symprec=SYMPREC, angle_tolerance=ANGLE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu-time", action="store_true", help="time by process CPU time (a shared machine)")
    args = parser.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter

    with open(DATA / "mp_20_sample.csv") as handle:
        cifs = [row["cif"] for row in csv.DictReader(handle)]
    jsons = sorted((DATA / "structures").glob("*.json"))

    def parse() -> list[Structure]:
        with warnings.catch_warnings():  # "fractional coordinates rounded" on most MP CIFs
            warnings.simplefilter("ignore")
            parsed = [CifParser.from_str(c).parse_structures(primitive=False)[0] for c in cifs]
        return parsed + [Structure.from_file(p) for p in jsons]

    def floor() -> int:
        return sum(1 for s in parse() if SpacegroupAnalyzer(s, symprec=SYMPREC).get_space_group_number())

    structures = [s for s in parse() if s.is_ordered]
    inputs = [spglib_cell(s) for s in structures]
    cells = [quantize(standardize(s, DEFAULT_CRYSTAL_CONFIG.symprecs, ANGLE)) for s in structures]
    expanded = [expand_cell(c).spglib_cell() for c in cells]
    crystals = [Crystal(s) for s in structures]
    source = MpSource()
    files = [str(DATA / "mp_20_sample.csv"), *map(str, jsons)]

    def mp_convert() -> int:
        items = [item for f in files for item in source.read(f) if not isinstance(item, Reject)]
        return sum(len(source.convert(item).samples) for item in items)

    mp_convert()  # warm caches (space-group operations, element tables) so both sides are measured warm
    rows = {
        "floor": best(floor, args.rounds, clock),
        "parse": best(parse, args.rounds, clock),
        "spglib(input)": best(lambda: [dataset(c) for c in inputs], args.rounds, clock),
        "spglib(expanded)": best(lambda: [dataset(c) for c in expanded], args.rounds, clock),
        "write_crystal": best(lambda: [write_crystal(c) for c in crystals], args.rounds, clock),
        "mp convert": best(mp_convert, args.rounds, clock),
    }
    n = len(files) - 1 + len(cifs)
    print(f"{n} inputs ({len(structures)} ordered), best of {args.rounds}, {'CPU' if args.cpu_time else 'wall'} time")
    for name, seconds in rows.items():
        print(f"{name:18s} {seconds * 1e3:8.1f} ms  {seconds / rows['floor']:5.2f}x the floor's time")
    ceiling = rows["floor"] / (rows["floor"] + rows["spglib(expanded)"])
    print(f"ceiling of ingest/floor with the re-encode proof and no other cost: {ceiling:.2f}x")
    print(f"source convert / floor: {rows['floor'] / rows['mp convert']:.2f}x (bench_ingest adds tokenize + Parquet)")

    by_group: Counter[int] = Counter()
    for cell, structure in zip(cells, structures, strict=True):
        start = time.perf_counter()
        dataset(spglib_cell(structure))
        by_group[cell.number] += time.perf_counter() - start
    total = sum(by_group.values())
    counts = Counter(c.number for c in cells)
    top = ", ".join(f"sg {g} ({counts[g]} crystals) {t / total:.0%}" for g, t in by_group.most_common(3))
    print(f"spglib time of the inputs by space group (wall, one pass): {top}")

    rng = np.random.default_rng(0)
    changed = 0
    for structure in structures:
        moved = rng.normal(size=(len(structure), 3))
        moved *= 0.02 / np.linalg.norm(moved, axis=1, keepdims=True)
        copy = Structure(structure.lattice, structure.species, structure.cart_coords + moved,
                         coords_are_cartesian=True)
        first = quantize(standardize(copy, DEFAULT_CRYSTAL_CONFIG.symprecs, ANGLE))
        again = quantize(standardize(expand_cell(first).structure(), DEFAULT_CRYSTAL_CONFIG.symprecs, ANGLE))
        changed += again != first
    print(f"re-standardizing the binned cell changes it for {changed} of {len(structures)} copies moved 0.02 Å "
          "(the text is then the smallest cell of the cycle it settles in)")


if __name__ == "__main__":
    main()
