"""Crystal grammar over every fixture crystal: reconstruction rate, token counts, contact consistency,
and write+parse throughput against the bare library floor measured in the same run.

    python benchmarks/bench_crystal_roundtrip.py [--repeat 3] [--perturb 0.005] [--data tests/data/mp]

Inputs: the Materials Project fixtures (pymatgen Structure JSONs, Si CIF, MP-20 CSV CIFs, emmet
documents) and, reported apart, the MOF CIFs (100-1200 atoms). Reconstruction = pymatgen
StructureMatcher(ltol 0.2, stol 0.3, angle 5) between the input and the decoded crystal; idempotence =
write(parse(text)) == text. Floor = what any pipeline pays anyway: parse the input with pymatgen and run
SpacegroupAnalyzer (spglib). Ours = the same parse, then write_crystal + parse_crystal.
``--perturb A`` adds a pass on copies with every atom moved A Å at random (symprec-edge robustness).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import statistics
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from grammar.errors import GrammarError
from grammar.material import Crystal, contacts_consistent, crystals_match, parse_crystal, write_crystal
from grammar.tokenizer import default_tokenizer

ROOT = Path(__file__).resolve().parents[1]
Reader = Callable[[], Structure]


def raw_inputs(data: Path) -> tuple[list[tuple[str, Reader]], list[tuple[str, Reader]]]:
    """(MP fixtures, MOF CIFs) as (name, function that parses the raw input with pymatgen)."""
    from_dict, from_cif = Structure.from_dict, partial(Structure.from_str, fmt="cif")
    mp: list[tuple[str, Reader]] = []
    for path in sorted((data / "structures").glob("*.json")):
        mp.append((path.name, partial(from_dict, json.loads(path.read_text()))))
    mp.append(("Si_mp_149.cif", partial(from_cif, (data / "Si_mp_149.cif").read_text())))
    with open(data / "mp_20_sample.csv") as handle:
        mp += [(row["material_id"], partial(from_cif, row["cif"])) for row in csv.DictReader(handle)]
    with gzip.open(data / "emmet_materials_Li_Fe_V.json.gz") as handle:
        mp += [(doc["task_id"], partial(from_dict, doc["structure"])) for doc in json.load(handle)]
    mofs = [(p.name, partial(from_cif, p.read_text())) for p in sorted((data / "mof").glob("*.cif"))]
    return mp, mofs


def quality(label: str, items: list[tuple[str, Reader]], perturb: float = 0.0) -> None:
    tokenizer = default_tokenizer()
    rng = np.random.default_rng(0)
    ok, rejected, failures, tokens, consistency = 0, [], [], [], []
    for name, read in items:
        structure = read()
        if perturb:
            moved = structure.cart_coords + _random_shifts(rng, len(structure), perturb)
            structure = Structure(structure.lattice, structure.species_and_occu, moved, coords_are_cartesian=True)
        try:
            crystal = Crystal.from_structure(structure, name)
        except GrammarError as exc:
            rejected.append(f"{name}: {exc.reason_code}: {exc}")
            continue
        try:
            text = write_crystal(crystal)
            decoded = parse_crystal(text)
        except GrammarError as exc:
            failures.append(f"{name}: {exc.reason_code}: {exc}")
            continue
        if not crystals_match(crystal, decoded):
            failures.append(f"{name}: decoded crystal does not match the input")
        elif write_crystal(decoded) != text:
            failures.append(f"{name}: write(parse(text)) != text")
        else:
            ok += 1
        tokens.append(len(tokenizer.encode(text)))
        consistency.append(contacts_consistent(crystal, text))
    attempted = len(items) - len(rejected)
    print(f"[{label}] {len(items)} inputs, {len(rejected)} rejected at input, reconstruction+idempotence "
          f"{ok}/{attempted} = {ok / max(1, attempted):.2%}")
    for line in rejected:
        print(f"  rejected  {line}")
    for line in failures:
        print(f"  FAILED    {line}")
    if tokens:
        print(f"  tokens/crystal mean {statistics.mean(tokens):.1f} median {statistics.median(tokens):.0f} "
              f"max {max(tokens)}; contact consistency mean {statistics.mean(consistency):.4f} "
              f"min {min(consistency):.4f}")


def _random_shifts(rng: np.random.Generator, n: int, amplitude: float) -> np.ndarray:
    directions = rng.normal(size=(n, 3))
    return amplitude * directions / np.linalg.norm(directions, axis=1, keepdims=True)


def throughput(label: str, items: list[tuple[str, Reader]], repeat: int) -> None:
    ordered = [(name, read) for name, read in items if read().is_ordered]

    def floor() -> None:
        for _, read in ordered:
            SpacegroupAnalyzer(read(), symprec=0.01).get_symmetry_dataset()

    def ours() -> None:
        for name, read in ordered:
            parse_crystal(write_crystal(Crystal.from_structure(read(), name)))

    floor_s = min(_timed(floor) for _ in range(repeat))
    ours_s = min(_timed(ours) for _ in range(repeat))
    n = len(ordered)
    print(f"[{label}] {n} ordered crystals, best of {repeat}: write+parse {n / ours_s:,.1f} structures/s "
          f"({1e3 * ours_s / n:.1f} ms each); floor (pymatgen parse + SpacegroupAnalyzer) {n / floor_s:,.1f} "
          f"structures/s ({1e3 * floor_s / n:.1f} ms each); ours/floor time {ours_s / floor_s:.2f}x")


def _timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "tests/data/mp")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--perturb", type=float, default=0.0, help="also test copies with atoms moved this many Å")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # pymatgen CIF rounding notes, spglib deprecation notes
    mp, mofs = raw_inputs(args.data)
    quality("MP fixtures", mp)
    quality("MOF CIFs", mofs)
    if args.perturb:
        quality(f"MP fixtures, atoms moved {args.perturb} Å", mp, perturb=args.perturb)
    throughput("MP fixtures", mp, args.repeat)
    throughput("MOF CIFs", mofs, 1)


if __name__ == "__main__":
    main()
