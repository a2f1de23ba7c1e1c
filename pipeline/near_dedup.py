"""Near-duplicate dedup: MinHash LSH over token shingles, then connected components.

Shingles are n-grams of token ids (``input_ids``, default n=5): the grammar tokenizer already splits
text into chemically meaningful units (an atom, a bond, a residue), so an n-gram of tokens is the
natural "word shingle" here, and a point mutation or a swapped substituent changes about n shingles.
Documents shorter than n are one shingle. Shingles are hashed to u64 with numpy (vectorized, one
pass per n-gram position); the MinHash signatures and the LSH index are rensa's (Rust).

Steps, and how each scales:
1. signatures: ``RMinHash.digest_matrix_from_flat_token_hashes`` per batch, in-process (rensa uses
   all cores) or per block on Ray Data (``use_ray``);
2. candidates: rows sharing a band with another row of the same task (rensa's ``RMinHashLSH`` in
   process; on Ray, band keys are bucketed with numpy). Usually a small fraction of the input.
   Memory: ~0.7 KB per record (rensa digest matrix + index) in process; on Ray the signatures
   (0.5 KB per record) are gathered on the driver, which is fine to ~10^7 records per node; past
   that the banding would become a Ray shuffle by band key (not written yet);
3. edges: inside each (task, band) bucket, every pair when the bucket is small (``all_pairs_up_to``),
   else every member to the bucket's best-ranked row (rows are processed in kept-rule order, so
   results do not depend on input order; star edges bound the work of huge buckets at a small
   recall cost); an edge is kept when the signatures agree on at least ``threshold`` of their slots
   (``verify``), so band collisions between dissimilar records do not chain clusters together;
4. clusters: connected components of the edges (``scipy.sparse.csgraph``, C union-find speed,
   O(rows + edges) memory, ~10^8 candidate rows per node).
Domains: proteins only by default. Near-identical SMILES are analog series (one substituent apart:
121 of the first 500 EGFR/ChEMBL molecules at 0.8), i.e. distinct compounds with distinct data;
complexes and pockets of one protein with different ligands share most shingles. ``domains=None``
compares every domain (always within one task).

Each cluster keeps one record by the exact-dedup rule (``pipeline.dedup``); the others are
duplicates of it, with their estimated Jaccard similarity to it. Clusters are transitive: a member
can be similar to the kept record only through other members.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import rensa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pipeline.dedup import RANK_COLUMNS, DedupResult, as_frame, duplicate_rows, sorted_output, with_rank

_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class NearDedupConfig:
    threshold: float = 0.8  # estimated Jaccard at or above which two records are near duplicates
    num_perm: int = 128
    bands: int = 16  # 16 bands x 8 rows: a pair at Jaccard 0.8 becomes a candidate with p = 0.95
    shingle: int = 5  # token n-gram length
    seed: int = 42
    domains: tuple[str, ...] | None = ("protein",)  # None: every domain; see the module docstring
    verify: bool = True  # check candidate edges against the threshold on the signatures
    all_pairs_up_to: int = 32  # buckets up to this size compare all pairs; larger ones link to their first row
    use_ray: bool = False
    batch_rows: int = 65_536
    source_priority: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.num_perm % self.bands:
            raise ValueError(f"num_perm ({self.num_perm}) must be a multiple of bands ({self.bands})")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")


def shingle_hashes(input_ids: pa.ListArray | pa.ChunkedArray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """u64 hashes of the token n-grams of each row, flat, with row offsets (rensa's flat layout)."""
    if isinstance(input_ids, pa.ChunkedArray):
        input_ids = input_ids.combine_chunks()
    offsets = input_ids.offsets.to_numpy().astype(np.int64)
    values = input_ids.values.to_numpy(zero_copy_only=False).astype(np.uint64)
    lengths = np.diff(offsets)
    counts = np.where(lengths > 0, np.maximum(lengths - n + 1, 1), 0)
    out_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    # Shingle i of a row starts at the row's first token plus i.
    within_row = np.arange(out_offsets[-1], dtype=np.int64) - np.repeat(out_offsets[:-1], counts)
    starts = np.repeat(offsets[:-1], counts) + within_row
    ends = np.repeat(offsets[1:], counts)
    hashes = np.zeros(len(starts), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            position = starts + j
            token = np.where(position < ends, values[np.minimum(position, max(len(values) - 1, 0))] + np.uint64(1), 0)
            hashes = (hashes ^ token.astype(np.uint64)) * _MIX
        hashes ^= hashes >> np.uint64(31)
    return hashes, out_offsets.astype(np.uint64)


def digest_matrix(input_ids: pa.ListArray | pa.ChunkedArray, config: NearDedupConfig) -> rensa.RMinHashDigestMatrix:
    hashes, offsets = shingle_hashes(input_ids, config.shingle)
    return rensa.RMinHash.digest_matrix_from_flat_token_hashes(hashes, offsets, config.num_perm, config.seed)


def signatures(input_ids: pa.ListArray | pa.ChunkedArray, config: NearDedupConfig) -> np.ndarray:
    """(rows, num_perm) uint32 MinHash signatures."""
    if len(input_ids) == 0:
        return np.zeros((0, config.num_perm), dtype=np.uint32)
    return np.asarray(digest_matrix(input_ids, config).to_rows(), dtype=np.uint32)


def candidate_rows(input_ids: pa.ChunkedArray, task_codes: np.ndarray, config: NearDedupConfig) -> np.ndarray:
    """Rows sharing an LSH band with another row of their task, found with rensa's native index."""
    flags = np.zeros(len(task_codes), dtype=bool)
    for code in unique_sorted(task_codes):
        rows = np.flatnonzero(task_codes == code)
        index = rensa.RMinHashLSH(config.threshold, config.num_perm, config.bands)
        batches = [rows[i : i + config.batch_rows] for i in range(0, len(rows), config.batch_rows)]
        matrices = [digest_matrix(input_ids.take(pa.array(batch)), config) for batch in batches]
        for start, matrix in zip(range(0, len(rows), config.batch_rows), matrices, strict=True):
            index.insert_matrix(matrix, start_key=start)
        for batch, matrix in zip(batches, matrices, strict=True):  # after all inserts: late partners count
            flags[batch] = np.asarray(index.query_duplicate_flags_matrix(matrix), dtype=bool)
    return np.flatnonzero(flags)


def band_keys(signature: np.ndarray, task_codes: np.ndarray, band: int, bands: int) -> np.ndarray:
    """A u64 key per row for one band: equal for rows of one task with equal band values. A 64-bit
    collision between different bands only adds a candidate, which verification then drops."""
    width = signature.shape[1] // bands
    keys = task_codes.astype(np.uint64) * _MIX
    with np.errstate(over="ignore"):
        for column in signature[:, band * width : (band + 1) * width].T:
            keys = (keys ^ column.astype(np.uint64)) * _MIX
            keys ^= keys >> np.uint64(29)
    return keys


def sorted_groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ordered by key (stable, so by row within a key), and each group's start and size."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(keys) else np.zeros(0, dtype=np.int64)
    return order, starts, np.diff(np.r_[starts, len(order)])


def colliding_rows(signature: np.ndarray, task_codes: np.ndarray, bands: int) -> np.ndarray:
    """Rows sharing any band with another row of their task (the Ray path's candidate step)."""
    flags = np.zeros(len(signature), dtype=bool)
    for band in range(bands):
        order, _, sizes = sorted_groups(band_keys(signature, task_codes, band, bands))
        flags[order] |= np.repeat(sizes > 1, sizes)
    return np.flatnonzero(flags)


def bucket_edges(
    signature: np.ndarray, task_codes: np.ndarray, bands: int, all_pairs_up_to: int
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate edges over all bands, deduplicated: every pair inside a bucket of up to
    ``all_pairs_up_to`` rows, and each row to the bucket's first (best-ranked) row in larger ones."""
    n = len(signature)
    edges = [np.zeros(0, dtype=np.int64)]
    for band in range(bands):
        order, starts, sizes = sorted_groups(band_keys(signature, task_codes, band, bands))
        for size in unique_sorted(sizes[(sizes > 1) & (sizes <= all_pairs_up_to)]):
            first, second = np.triu_indices(size, 1)
            group_starts = starts[sizes == size][:, None]
            edges.append(pair_codes(order[(group_starts + first).ravel()], order[(group_starts + second).ravel()], n))
        large = sizes > all_pairs_up_to
        anchors = np.repeat(np.where(large, order[starts], -1), sizes)
        linked = (anchors >= 0) & (order != anchors)
        edges.append(pair_codes(order[linked], anchors[linked], n))
    codes = unique_sorted(np.concatenate(edges))
    return codes // n, codes % n


def unique_sorted(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values. Sort + mask: numpy 2.4's hash-based ``np.unique`` was ~15x slower here."""
    ordered = np.sort(values)
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ordered) else ordered


def pair_codes(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """An unordered pair of row indices as one int64 (fast to deduplicate)."""
    return np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b)


def similarity(signature: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """Estimated Jaccard: the fraction of MinHash slots two signatures agree on."""
    slots = signature.shape[1]
    parts = [
        np.count_nonzero(signature[a[i : i + chunk]] == signature[b[i : i + chunk]], axis=1) / slots
        for i in range(0, len(a), chunk)
    ]
    return np.concatenate(parts) if parts else np.zeros(0)


def clusters(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def similar_pairs(
    input_ids: pa.ChunkedArray, task_codes: np.ndarray, config: NearDedupConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidate rows, their signatures, and the (verified) edges between them as candidate indices."""
    if config.use_ray:
        all_signatures = ray_signatures(pa.table({"input_ids": input_ids}), config)
        candidates = colliding_rows(all_signatures, task_codes, config.bands)
        signature = all_signatures[candidates]
    else:
        candidates = candidate_rows(input_ids, task_codes, config)
        signature = signatures(input_ids.take(pa.array(candidates, type=pa.int64())), config)
    src, dst = bucket_edges(signature, task_codes[candidates], config.bands, config.all_pairs_up_to)
    if config.verify:
        close = similarity(signature, src, dst) >= config.threshold
        src, dst = src[close], dst[close]
    return candidates, signature, src, dst


def near_dedup(config: NearDedupConfig, records: pl.DataFrame | pa.Table) -> DedupResult:
    frame = with_rank(as_frame(records), config.source_priority).with_row_index("_row")
    eligible = frame.filter(pl.col("n_tokens") > 0)
    if config.domains is not None:
        eligible = eligible.filter(pl.col("domain").is_in(config.domains))
    # Rows in kept-rule order: bucket anchors, edges and so clusters do not depend on the input order.
    eligible = eligible.sort(list(RANK_COLUMNS))
    task_codes = eligible["task"].cast(pl.Categorical).to_physical().to_numpy().astype(np.uint32)
    input_ids = pa.chunked_array([eligible["input_ids"].to_arrow()])
    candidates, signature, src, dst = similar_pairs(input_ids, task_codes, config)
    labels = clusters(len(candidates), src, dst)
    # Candidates are ascending row positions, i.e. in kept-rule order: a cluster keeps its first.
    keeper_of_label = np.full(labels.max() + 1 if len(labels) else 0, len(candidates), dtype=np.int64)
    np.minimum.at(keeper_of_label, labels, np.arange(len(candidates)))
    keeper = keeper_of_label[labels]
    dropped = np.flatnonzero(keeper != np.arange(len(candidates)))
    scores = similarity(signature, dropped, keeper[dropped])
    return assemble(frame, eligible, candidates[dropped], candidates[keeper[dropped]], scores)


def assemble(
    frame: pl.DataFrame, eligible: pl.DataFrame, dropped: np.ndarray, keepers: np.ndarray, scores: np.ndarray
) -> DedupResult:
    """Kept records and duplicate rows from eligible-row indices of dropped records and their keepers."""
    keep_columns = eligible[keepers].select(
        _keep_content_id="content_id", _keep_source="source", _keep_source_id="source_id"
    )
    dropped_rows = pl.concat([eligible[dropped], keep_columns], how="horizontal")
    duplicates = duplicate_rows(dropped_rows, "near", pl.col("_keep_content_id"), pl.Series(scores))
    kept = frame.filter(~pl.col("_row").is_in(dropped_rows["_row"].implode())).drop("_row", "_rank")
    return DedupResult(sorted_output(kept), duplicates.sort("content_id", "source", "source_id"))


# --- Ray path: signatures per block, in parallel -----------------------------------------------------
def _signature_batch(batch: pa.Table, config: NearDedupConfig) -> dict[str, np.ndarray]:
    return {"signature": signatures(batch.column("input_ids"), config)}


def ray_signatures(table: pa.Table, config: NearDedupConfig) -> np.ndarray:
    """Signatures computed per block on Ray Data (order kept), gathered as one (rows, num_perm) array."""
    import ray

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    dataset = ray.data.from_arrow(table).map_batches(
        _signature_batch, fn_kwargs={"config": config}, batch_format="pyarrow", batch_size=config.batch_rows
    )
    parts = [batch["signature"] for batch in dataset.iter_batches(batch_format="numpy", batch_size=None)]
    return np.concatenate(parts).astype(np.uint32) if parts else np.zeros((0, config.num_perm), dtype=np.uint32)
