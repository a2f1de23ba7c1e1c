"""ANARCI against AntPack on real antibody chains: IMGT CDR agreement and chains numbered per second.

    python benchmarks/bench_antibody_numbering.py [--copies 40]

The chains: every protein chain of the bundled antibody structures (tests/data/antibody/structures, and
1IGY), as ``pipeline.sources.pdb_structure`` reads them; ANARCI's own chain typing picks the antibody ones
(H, K, L) for the comparison. Both tools number the same sequences with the IMGT scheme; CDRs are IMGT
positions 27-38, 56-65, 105-117 on ANARCI's numbering and ``assign_cdr_labels`` on AntPack's. AntPack is not a
dependency (licence: see ``pipeline/sources/antibody_numbering.py``); install it to compare
(``pip install antpack==0.3.8``: later versions need a licence key).
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

from anarci import anarci

from pipeline.sources.pdb_structure import load_entry

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests/data"
IMGT_CDRS = ((27, 38), (56, 65), (105, 117))


def real_chains() -> dict[str, str]:
    chains = {}
    for path in [*sorted((DATA / "antibody/structures").glob("*")), DATA / "pdb/mmcif/1igy.cif"]:
        text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
        entry = load_entry(text, path.name[:4])
        chains.update({f"{entry.entry_id}:{c.chain_id}": c.sequence for c in entry.chains})
    return chains


def anarci_cdrs(named: list[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    numbered, details, _ = anarci(named, scheme="imgt", allowed_species=None)
    found = {}
    for (name, _), domains, detail in zip(named, numbered, details, strict=True):
        if domains and detail[0]["chain_type"] in "HKL":
            found[name] = tuple("".join(aa for (number, _), aa in domains[0][0] if low <= number <= high and aa != "-")
                                for low, high in IMGT_CDRS)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=40, help="times each antibody chain is numbered for speed")
    args = parser.parse_args()
    chains = real_chains()
    reference = anarci_cdrs(list(chains.items()))
    antibody = {name: chains[name] for name in reference}
    print(f"{len(chains)} protein chains, {len(antibody)} antibody chains (ANARCI: H/K/L)")
    batch = list(antibody.items()) * args.copies
    start = time.perf_counter()
    anarci(batch, scheme="imgt", allowed_species=None)
    anarci_s = time.perf_counter() - start
    print(f"ANARCI : {len(batch)} chains in {anarci_s:.2f} s = {len(batch) / anarci_s:,.0f} chains/s "
          "(one batched call)")
    try:
        from antpack import SingleChainAnnotator
    except ImportError:
        print("AntPack not installed: no comparison")
        return
    annotator = SingleChainAnnotator(chains=["H", "K", "L"], scheme="imgt")
    agree = total = 0
    for name, sequence in antibody.items():
        numbering, _, chain, _ = annotator.analyze_seq(sequence)
        labels = annotator.assign_cdr_labels(numbering, chain)
        theirs = tuple("".join(aa for aa, label in zip(sequence, labels, strict=True) if label == cdr)
                       for cdr in ("cdr1", "cdr2", "cdr3"))
        agree += sum(a == b for a, b in zip(theirs, reference[name], strict=True))
        total += 3
    start = time.perf_counter()
    for _, sequence in batch:
        numbering, _, chain, _ = annotator.analyze_seq(sequence)
        annotator.assign_cdr_labels(numbering, chain)
    antpack_s = time.perf_counter() - start
    print(f"AntPack: {len(batch)} chains in {antpack_s:.2f} s = {len(batch) / antpack_s:,.0f} chains/s "
          f"({anarci_s / antpack_s:.0f}x ANARCI)")
    print(f"IMGT CDRs identical: {agree} of {total}")
    for name, sequence in chains.items():
        if name in antibody:
            continue
        _, identity, chain, error = annotator.analyze_seq(sequence)
        if not error:
            print(f"AntPack numbers non-antibody chain {name} as {chain} (identity {identity:.2f}, no error)")


if __name__ == "__main__":
    main()
