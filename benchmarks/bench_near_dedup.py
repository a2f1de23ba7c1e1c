"""Near-duplicate dedup: the stage (rensa MinHash + LSH, numpy banding, scipy components) against the
library it wraps, rensa, used directly (``RMinHash.from_token_sets`` + ``RMinHashLSH``: the baseline),
and datasketch (MinHash.bulk + MinHashLSH, a second reference row), on the same records, throughput and
recall in the same run, at the stage's default parameters (``NearDedupConfig``: threshold 0.8,
num_perm 128, 16 bands, 5-token shingles) unless flags say otherwise.

    python benchmarks/bench_near_dedup.py [--rows 20000] [--plant 0.05]     (quick: --rows 2000)

Records: MOSES SMILES (../shared/data/scale; from a clean clone the bundled ChEMBL SMILES, ~5.9k, and
the output says so) tokenized with the grammar tokenizer, plus ``--plant`` of them re-emitted with one
atom token swapped (C<->N, c<->n, O<->S): near duplicates by construction. Every engine gets the same
token n-gram shingles, ``num_perm``, bands x rows and threshold, and does the same work: signatures ->
LSH candidates -> keep candidates whose signatures agree on >= threshold -> connected components.
All are timed from token ids to clusters, single process.

Recall is measured against exact Jaccard, without favouring either engine: for a random sample of
records (``--recall-sample``), every pair (sampled record, any record) is scored exactly on the shingle
sets (a sparse incidence-matrix product), and the pairs at or above the threshold are the truth; an
engine recalls a true pair when it put both records in one cluster. Planted pairs are scored the same.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
SWAPS = {"C": "N", "N": "C", "c": "n", "n": "c", "O": "S", "S": "O"}


def planted_records(rows: int, plant: float) -> tuple[pl.DataFrame, list[tuple[int, int]]]:
    from inputs import smiles_rows

    from grammar.lexer import TokenStream
    from grammar.tokenizer import default_tokenizer

    smiles = smiles_rows(rows)
    rng = random.Random(5)
    variants, planted = [], []
    tokenizer = default_tokenizer()
    for index in rng.sample(range(len(smiles)), int(plant * len(smiles))):
        tokens = [token.text for token in TokenStream(smiles[index]).tokens]
        positions = [i for i, t in enumerate(tokens) if t in SWAPS]
        if positions:
            position = rng.choice(positions)
            tokens[position] = SWAPS[tokens[position]]
            planted.append((index, len(smiles) + len(variants)))
            variants.append("".join(tokens))
    texts = [f"<MoleculeS>{s}<MoleculeE>" for s in smiles + variants]
    ids = tokenizer.encode_batch(texts, engine="python")
    frame = pl.DataFrame({
        "content_id": [f"{i:012d}" for i in range(len(texts))], "source": "moses", "source_id": "",
        "source_uri": "", "domain": "molecule", "task": "molecule", "dedup_key": "",
        "input_ids": pl.Series(ids, dtype=pl.List(pl.Int32)), "n_tokens": [len(i) for i in ids],
    })
    return frame, planted


def ours(frame: pl.DataFrame, args, use_ray: bool = False) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Cluster label per record (the kept record's index) and the (dropped, kept) pairs."""
    from pipeline.near_dedup import NearDedupConfig, near_dedup

    config = NearDedupConfig(threshold=args.threshold, num_perm=args.num_perm, bands=args.bands, shingle=args.shingle,
                             seed=args.seed, domains=None, use_ray=use_ray, all_pairs_up_to=args.all_pairs_up_to)
    result = near_dedup(config, frame)
    index = {c: i for i, c in enumerate(frame["content_id"])}
    labels = np.arange(frame.height)
    pairs = [(index[d], index[k]) for d, k in result.duplicates.select("content_id", "duplicate_of").iter_rows()]
    for dropped, keeper in pairs:
        labels[dropped] = keeper
    return labels, pairs


def shingle_sets(frame: pl.DataFrame, n: int) -> list[list[bytes]]:
    """Each record's token n-grams as bytes (a record shorter than n is one shingle), as the stage shingles."""
    sets = []
    for ids in frame["input_ids"].to_list():
        array = np.asarray(ids, dtype=np.int32)
        sets.append([array[i : i + n].tobytes() for i in range(max(len(array) - n + 1, 1))])
    return sets


def components(n: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def rensa_engine(frame: pl.DataFrame, args) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """rensa as its README uses it: one RMinHash per record, an RMinHashLSH index, query, verify, components."""
    import rensa

    signatures = rensa.RMinHash.from_token_sets(shingle_sets(frame, args.shingle), args.num_perm, args.seed)
    lsh = rensa.RMinHashLSH(args.threshold, args.num_perm, args.bands)
    lsh.insert_many(signatures, start_key=0)
    pairs = []
    for i, found in enumerate(lsh.query_all(signatures)):
        for j in found:
            if j > i and signatures[i].jaccard(signatures[j]) >= args.threshold:
                pairs.append((i, j))
    return components(frame.height, pairs), pairs


def datasketch_engine(frame: pl.DataFrame, args) -> tuple[np.ndarray, list[tuple[int, int]]]:
    from datasketch import MinHash, MinHashLSH

    signatures = MinHash.bulk(shingle_sets(frame, args.shingle), num_perm=args.num_perm)
    lsh = MinHashLSH(threshold=args.threshold, num_perm=args.num_perm, params=(args.bands, args.num_perm // args.bands))
    with lsh.insertion_session() as session:
        for i, signature in enumerate(signatures):
            session.insert(i, signature)
    pairs = []
    for i, signature in enumerate(signatures):
        for j in lsh.query(signature):
            if j > i and signature.jaccard(signatures[j]) >= args.threshold:
                pairs.append((i, j))
    return components(frame.height, pairs), pairs


def true_pairs(frame: pl.DataFrame, n: int, threshold: float, sample: np.ndarray) -> list[tuple[int, int]]:
    """Every pair (sampled row, other row) whose exact shingle-set Jaccard is >= threshold."""
    import pyarrow as pa
    from scipy.sparse import csr_matrix

    from pipeline.near_dedup import shingle_hashes

    hashes, offsets = shingle_hashes(pa.chunked_array([frame["input_ids"].to_arrow()]), n)
    rows = np.repeat(np.arange(frame.height), np.diff(offsets.astype(np.int64)))
    columns = pl.Series(hashes).rank("dense").to_numpy() - 1
    incidence = csr_matrix((np.ones(len(rows), dtype=np.int32), (rows, columns)))
    incidence.sum_duplicates()
    incidence.data[:] = 1  # a shingle repeated in a record counts once
    sizes = np.asarray(incidence.sum(axis=1)).ravel()
    overlap = (incidence[sample] @ incidence.T).tocoo()
    union = sizes[sample[overlap.row]] + sizes[overlap.col] - overlap.data
    keep = (overlap.data / union >= threshold) & (sample[overlap.row] != overlap.col)
    return list(zip(sample[overlap.row[keep]].tolist(), overlap.col[keep].tolist(), strict=True))


def main() -> None:
    from pipeline.near_dedup import NearDedupConfig

    stage = NearDedupConfig()  # the defaults a user gets
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--plant", type=float, default=0.05)
    parser.add_argument("--threshold", type=float, default=stage.threshold)
    parser.add_argument("--shingle", type=int, default=stage.shingle)
    parser.add_argument("--num-perm", type=int, default=stage.num_perm)
    parser.add_argument("--bands", type=int, default=stage.bands)
    parser.add_argument("--seed", type=int, default=stage.seed)
    parser.add_argument("--all-pairs-up-to", type=int, default=stage.all_pairs_up_to,
                        help="the stage's bucket size for all pairs")
    parser.add_argument("--recall-sample", type=int, default=2000, help="records scored exactly against all")
    parser.add_argument("--skip-datasketch", action="store_true", help="leave out the datasketch row")
    parser.add_argument("--ray", action="store_true", help="also time the stage with Ray signatures")
    args = parser.parse_args()

    frame, planted = planted_records(args.rows, args.plant)
    defaults = (args.threshold, args.num_perm, args.bands, args.shingle) == (
        stage.threshold, stage.num_perm, stage.bands, stage.shingle)
    print(f"# {frame.height:,} records (the SMILES above + {len(planted):,} planted variants); "
          f"shingle={args.shingle} tokens, num_perm={args.num_perm}, bands={args.bands}, threshold={args.threshold}"
          f" ({'the stage defaults' if defaults else 'NOT the stage defaults'})")
    engines = [("logos near_dedup (rensa)", ours), ("rensa directly [baseline]", rensa_engine)]
    if not args.skip_datasketch:
        engines.append(("datasketch", datasketch_engine))
    if args.ray:
        engines.append(("logos near_dedup (Ray, 2 CPUs)", lambda f, a: ours(f, a, use_ray=True)))
    results = {}
    for name, engine in engines:
        if "Ray" in name:
            from pipeline.ray_runtime import ray_session

            with ray_session(num_cpus=2):
                ours(frame.head(1000), args, use_ray=True)  # warm-up: start workers outside the timing
                start = time.perf_counter()
                labels, pairs = engine(frame, args)
        else:
            engine(frame.head(200), args)  # warm-up: imports and first-call setup outside the timing
            start = time.perf_counter()
            labels, pairs = engine(frame, args)
        results[name] = (time.perf_counter() - start, labels, pairs)
    sample = np.random.default_rng(3).choice(frame.height, min(args.recall_sample, frame.height), replace=False)
    truth = true_pairs(frame, args.shingle, args.threshold, sample)
    planted_rows = np.array(sorted({i for pair in planted for i in pair}))
    planted_truth = set(true_pairs(frame, args.shingle, args.threshold, planted_rows))
    planted_true = [p for p in planted if p in planted_truth or p[::-1] in planted_truth]
    base_seconds = results["rensa directly [baseline]"][0]
    print(f"# recall truth: {len(truth):,} pairs at exact Jaccard >= {args.threshold} among {len(sample):,} sampled "
          f"records x all; {len(planted_true):,} of {len(planted):,} planted pairs are at or above it")
    print(f"{'engine':30} {'seconds':>8} {'records/s':>11} {'x rensa':>8} {'recall':>7} {'planted recall':>15}")
    for name, (seconds, labels, _) in results.items():
        recall = np.mean([labels[i] == labels[j] for i, j in truth]) if truth else float("nan")
        planted_recall = np.mean([labels[i] == labels[j] for i, j in planted_true]) if planted_true else float("nan")
        print(f"{name:30} {seconds:8.2f} {frame.height / seconds:11,.0f} {base_seconds / seconds:8.1f} "
              f"{recall:7.3f} {planted_recall:15.3f}")


if __name__ == "__main__":
    main()
