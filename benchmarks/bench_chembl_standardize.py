"""ChEMBL Structure Pipeline standardize + parent per molecule: the library as shipped vs with its SMARTS
patterns parsed once (``pipeline.sources.smiles.ChemWithParsedSmarts``), same molecules, same run, outputs
checked identical.

    python benchmarks/bench_chembl_standardize.py [--molecules 2000] [--rounds 2]

Input: the ChEMBL SMILES bundled in tests/data (EGFR export, chemreps, SDF). Time is this process's CPU time,
best of ``--rounds``; the shipped library runs first, before logos's module replaces its ``Chem``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inputs import bundled_smiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecules", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from chembl_structure_pipeline import standardizer
    from rdkit import Chem

    smiles = bundled_smiles()[: args.molecules]
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    print(f"# input: {len(mols):,} molecules from the bundled ChEMBL samples")

    def parents() -> list[str]:
        return [Chem.MolToSmiles(standardizer.get_parent_mol(standardizer.standardize_mol(Chem.Mol(m)))[0])
                for m in mols]

    def best(run) -> tuple[float, list[str]]:
        seconds, out = float("inf"), []
        for _ in range(args.rounds):
            start = time.process_time()
            out = run()
            seconds = min(seconds, time.process_time() - start)
        return seconds, out

    shipped_s, shipped = best(parents)
    import pipeline.sources.smiles  # noqa: F401  (replaces the standardizer's Chem)

    parsed_once_s, parsed_once = best(parents)
    if shipped != parsed_once:
        raise SystemExit("the two runs disagree")
    print(f"shipped: {shipped_s / len(mols) * 1e3:.2f} ms/molecule; SMARTS parsed once: "
          f"{parsed_once_s / len(mols) * 1e3:.2f} ms/molecule; {shipped_s / parsed_once_s:.2f}x, same parents")


if __name__ == "__main__":
    main()
