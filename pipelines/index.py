"""ANN index choice by measurement.

For each vector column, exact search (when the table is small enough) and LanceDB's IVF_HNSW_SQ
and IVF_PQ (with refine) are tried; for each, search parameters are raised step by step until
recall@k against exact numpy search reaches the target. The fastest configuration that reaches
the target is kept, and its search parameters are written into the manifest for serving.
At catalog scale two searches in the serving process come first: the norm-ordered exact search
(`app.candidates.memory_search`, for CF vectors; not tried on unit-norm ones) and the partitioned
search (`app.candidates.partitioned_search`, for unit-norm content vectors).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from lancedb.index import BTree, IvfHnswSq, IvfPq, IvfSq, LabelList

from app.candidates.memory_search import NormOrderedSearch
from app.candidates.partitioned_search import KIND as PARTITIONED
from app.candidates.partitioned_search import PartitionedSearch, Partitions
from app.store import IndexChoice
from pipelines.partitions import fit_partitions
from pipelines.scale import CATALOG_SCALE_ITEMS
from pipelines.steps import Step

METRIC: Final = "dot"
MIN_ROWS_FOR_INDEX = 5_000  # below this an IVF index has too little to train on: search exactly
MIN_ROWS_FOR_PQ = 100_000  # PQ codebooks need many rows per partition to be worth their error
# Catalog scale: from here on IVF_HNSW_SQ is not tried (at 1M rows its build took over 11 min
# for one 64-d column on 2 cores, and it reached 0.54 recall@1000 on ALS dot products); the
# in-memory norm-ordered exact search is tried first, and IVF_PQ only when that is slower than
# MEMORY_FAST_MS at p50 (unit-norm content vectors leave it nothing to prune).
SCALE_ROWS = CATALOG_SCALE_ITEMS
MEMORY_FAST_MS = 5.0
MEMORY_PROBES = 20  # queries timed for the in-memory search before IVF_PQ is considered
# Scores computed at once by exact_top_k (64 MB of float32, about as much again for the
# argpartition): at 10M rows 32 queries at once made 1.3 GB of scores and 2.6 GB of indices.
SCORE_BUDGET = 16_000_000
# Queries scored together on each pass over the rows. One query a pass read a 10M-row content
# column (15 GB, mapped, more than the page cache keeps beside a build) once per query.
QUERY_BLOCK = 128
UNIT_NORM_SAMPLE = 10_000  # rows whose norms say whether a column is unit-norm


@dataclass
class Trial:
    kind: str
    params: dict[str, Any]
    search: dict[str, int]
    recall: float
    p50_ms: float
    p99_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "params": self.params,
            "search": self.search,
            "recall": round(self.recall, 4),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
        }


def exact_top_k(
    vectors: np.ndarray, queries: np.ndarray, k: int, budget: int = SCORE_BUDGET
) -> np.ndarray:
    """Row numbers of the k largest dot products per query (brute force, numpy).

    Up to QUERY_BLOCK queries are scored per pass over the rows, and at most `budget` scores at
    once: past the budget the rows are taken a span at a time, each query's k best kept from
    span to span."""
    n = len(vectors)
    k = min(k, n)
    out = np.empty((len(queries), k), dtype=np.int64)
    block = max(1, min(QUERY_BLOCK, len(queries)))
    span = max(k, budget // block)
    for start in range(0, len(queries), block):
        batch = queries[start : start + block]
        if span >= n:
            scores = batch @ vectors.T
            out[start : start + block] = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            continue
        found = np.empty((len(batch), 0), dtype=np.int64)
        kept = np.empty((len(batch), 0), dtype=np.float32)
        for lo in range(0, n, span):
            hi = min(n, lo + span)
            scores = np.hstack([kept, batch @ vectors[lo:hi].T])
            rows = np.hstack([found, np.broadcast_to(np.arange(lo, hi), (len(batch), hi - lo))])
            if scores.shape[1] > k:
                best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
                scores = np.take_along_axis(scores, best, axis=1)
                rows = np.take_along_axis(rows, best, axis=1)
            found, kept = rows, scores
        out[start : start + block] = found
    return out


def search(
    table: Any, column: str, query: np.ndarray, k: int, search_params: dict[str, int]
) -> Any:
    """One ANN search with the manifest's search parameters (shared with serving)."""
    builder = table.search(query, vector_column_name=column).distance_type(METRIC).limit(k)
    if search_params.get("exact"):
        builder = builder.bypass_vector_index()
    if "nprobes" in search_params:
        builder = builder.nprobes(search_params["nprobes"])
    if "refine_factor" in search_params:
        builder = builder.refine_factor(search_params["refine_factor"])
    if "ef" in search_params:
        builder = builder.ef(search_params["ef"])
    return builder


def _measure(
    table: Any,
    column: str,
    queries: np.ndarray,
    truth: np.ndarray,
    k: int,
    search_params: dict[str, int],
) -> tuple[float, float, float]:
    recalls, times = [], []
    for query, expected in zip(queries, truth, strict=True):
        started = time.perf_counter()
        result = search(table, column, query, k, search_params).select(["item_index", "_distance"])
        found = result.to_arrow()["item_index"].to_numpy()
        times.append((time.perf_counter() - started) * 1000)
        recalls.append(len(np.intersect1d(found, expected)) / len(expected))
    return float(np.mean(recalls)), float(np.percentile(times, 50)), float(np.percentile(times, 99))


def _sub_vectors(dim: int) -> int:
    for width in (8, 4, 16, 2):
        if dim % width == 0:
            return dim // width
    return 1


def choose_index(
    table: Any,
    column: str,
    vectors: np.ndarray,
    queries: np.ndarray,
    *,
    k: int,
    recall_target: float,
    exact_max_rows: int,
    step: Step | None = None,
    known: IndexChoice | None = None,
    directory: Path | None = None,
    seed: int = 0,
) -> IndexChoice:
    """Try exact search and ANN indexes on `column`; keep the fastest that reaches the target.

    `vectors` must be the column's vectors in `item_index` order (the result ids are row numbers).
    `known`: the choice made on the same catalog's snapshot (the ranker's earlier events). At
    catalog scale (MIN_ROWS_FOR_PQ rows) only that index is built and measured, and kept if it
    still reaches the target: building every candidate index twice costs most of a large build.
    `directory`: the version's directory, where an in-memory partitioned search keeps its
    partitions (without one, that search is not tried).
    """
    n, dim = vectors.shape
    k = min(k, n)
    truth = exact_top_k(vectors, queries, k)
    trials: list[Trial] = []
    fitted: Partitions | None = None  # the partitions of the partitioned search, once tried

    def tick() -> None:
        if step is not None:
            step.advance(1)

    if known is not None and n >= MIN_ROWS_FOR_PQ and known.kind == MEMORY:
        trial = _memory_trial(vectors, queries, truth, k)
        tick()
        if trial.recall >= recall_target:
            return _choice(column, k, trial, [trial])
    elif known is not None and n >= MIN_ROWS_FOR_PQ and known.kind == PARTITIONED and directory:
        fitted = fit_partitions(vectors, np.random.default_rng(seed))
        trial = _partitioned_trial(vectors, fitted, queries, truth, k, known.search)
        tick()
        if trial.recall >= recall_target:
            fitted.save(directory, column)
            return _choice(column, k, trial, [trial])
    elif known is not None and n >= MIN_ROWS_FOR_PQ and known.kind in _CONFIGS:
        config = _CONFIGS[known.kind](distance_type=METRIC, **known.params)
        table.create_index(column, config=config)
        recall, p50, p99 = _measure(table, column, queries, truth, k, known.search)
        tick()
        if recall >= recall_target:
            tried = [Trial(known.kind, known.params, known.search, recall, p50, p99)]
            return _choice(column, k, tried[0], tried)
        table.drop_index(f"{column}_idx")

    if n >= SCALE_ROWS:
        # Unit-norm rows (content vectors) leave the norm-ordered search nothing to prune: it
        # scans every row, slower than MEMORY_FAST_MS at 1M, and its norm-ordered copy of the
        # vectors alone is 15 GB at 10M. It is not tried on them (nor listed in `tried`).
        if not _unit_norm(vectors):
            memory = _memory_trial(vectors, queries[:MEMORY_PROBES], truth[:MEMORY_PROBES], k)
            tick()
            if memory.recall >= recall_target and memory.p50_ms <= MEMORY_FAST_MS:
                memory = _memory_trial(vectors, queries, truth, k)  # the full measurement
                return _choice(column, k, memory, [memory])
            trials.append(memory)
        if directory is not None:
            # Unit-norm vectors (content): partitions probed in memory, quicker than LanceDB's
            # IVF at the same recall (at 1M, recall@1000 0.96 in 2 ms against 25 ms).
            fitted = fit_partitions(vectors, np.random.default_rng(seed))
            for search_params in _partitioned_grid(len(fitted.centroids)):
                trial = _partitioned_trial(vectors, fitted, queries, truth, k, search_params)
                trials.append(trial)
                tick()
                if trial.recall >= recall_target:
                    fitted.save(directory, column)
                    return _choice(column, k, trial, trials)

    if n <= exact_max_rows or n < MIN_ROWS_FOR_INDEX:
        recall, p50, p99 = _measure(table, column, queries, truth, k, {"exact": 1})
        trials.append(Trial("exact", {}, {"exact": 1}, recall, p50, p99))
        tick()
    if MIN_ROWS_FOR_INDEX <= n < SCALE_ROWS:
        partitions = max(1, n // 200_000)
        hnsw_params: dict[str, Any] = {
            "num_partitions": partitions,
            "m": 20,
            "ef_construction": 300,
        }
        table.create_index(column, config=IvfHnswSq(distance_type=METRIC, **hnsw_params))
        for factor in (1.5, 2, 3, 5):
            params = {"ef": int(k * factor), "nprobes": partitions}
            recall, p50, p99 = _measure(table, column, queries, truth, k, params)
            trials.append(Trial("IVF_HNSW_SQ", hnsw_params, params, recall, p50, p99))
            tick()
            if recall >= recall_target:
                break
    if n >= SCALE_ROWS:
        # Unit-norm vectors at scale: 8-bit scalar quantisation scans a few partitions without
        # a refine step (at 1M, recall@1000 0.98 at 16 of 250 partitions, three times quicker
        # than IVF_PQ with the refine it needs to reach the target).
        partitions = int(min(1024, max(64, round(math.sqrt(n) / 4))))
        sq_params: dict[str, Any] = {
            "num_partitions": partitions,
            "max_iterations": 20,
            "sample_rate": 64,
        }
        table.create_index(column, config=IvfSq(distance_type=METRIC, **sq_params))
        for share in (0.03, 0.06, 0.12, 0.25):
            params = {"nprobes": max(1, int(partitions * share))}
            recall, p50, p99 = _measure(table, column, queries, truth, k, params)
            trials.append(Trial("IVF_SQ", sq_params, params, recall, p50, p99))
            tick()
            if recall >= recall_target:
                break
    if n >= MIN_ROWS_FOR_PQ and not (n >= SCALE_ROWS and trials[-1].recall >= recall_target):
        partitions = int(min(4096, max(8, round(math.sqrt(n)))))
        pq_params: dict[str, Any] = {
            "num_partitions": partitions,
            "num_sub_vectors": _sub_vectors(dim),
        }
        if n >= SCALE_ROWS:  # k-means on a smaller sample, fewer rounds: minutes, not an hour
            partitions = int(min(1024, max(64, round(math.sqrt(n) / 4))))
            pq_params.update(num_partitions=partitions, max_iterations=20, sample_rate=64)
        table.create_index(column, config=IvfPq(distance_type=METRIC, **pq_params))
        for share in (0.05, 0.1, 0.2, 0.4):
            for refine in (5, 10):
                params = {"nprobes": max(1, int(partitions * share)), "refine_factor": refine}
                recall, p50, p99 = _measure(table, column, queries, truth, k, params)
                trials.append(Trial("IVF_PQ", pq_params, params, recall, p50, p99))
                tick()
                if recall >= recall_target:
                    break
            if trials[-1].recall >= recall_target:
                break

    good = [t for t in trials if t.recall >= recall_target]
    best = min(good, key=lambda t: t.p50_ms) if good else max(trials, key=lambda t: t.recall)
    built = trials[-1].kind
    if best.kind == PARTITIONED and fitted is not None and directory is not None:
        fitted.save(directory, column)
    if best.kind in NO_LANCE_INDEX and built not in NO_LANCE_INDEX:
        table.drop_index(f"{column}_idx")
    elif best.kind not in NO_LANCE_INDEX and best.kind != built:
        config = _CONFIGS[best.kind]
        table.create_index(column, config=config(distance_type=METRIC, **best.params))
    return _choice(column, k, best, trials)


_CONFIGS: dict[str, Any] = {"IVF_HNSW_SQ": IvfHnswSq, "IVF_PQ": IvfPq, "IVF_SQ": IvfSq}
MEMORY = "memory"  # app.candidates.memory_search: exact, in the serving process
NO_LANCE_INDEX = ("exact", MEMORY, PARTITIONED)  # choices served without a LanceDB vector index


def _partitioned_grid(partitions: int) -> list[dict[str, int]]:
    """Probes from 1/64 of the partitions up to 1/8, refining 2k rows; then 4k at 1/8."""
    grid = [{"nprobes": max(1, partitions // share), "refine": 2} for share in (64, 32, 16, 8)]
    return [*grid, {"nprobes": max(1, partitions // 8), "refine": 4}]


def _partitioned_trial(
    vectors: np.ndarray,
    partitions: Partitions,
    queries: np.ndarray,
    truth: np.ndarray,
    k: int,
    search_params: dict[str, int],
) -> Trial:
    """The partitioned search, as serving runs it, with these nprobes and refine."""
    search = PartitionedSearch(
        vectors, partitions, search_params["nprobes"], search_params["refine"]
    )
    params = {
        "partitions": len(partitions.centroids),
        "projected_dim": int(partitions.projection.shape[1]),
    }
    return _timed(PARTITIONED, params, dict(search_params), search.nearest, queries, truth, k)


def _unit_norm(vectors: np.ndarray, tolerance: float = 1e-3) -> bool:
    """Whether every row has norm 1, judged on UNIT_NORM_SAMPLE rows spread evenly over all."""
    rows = np.unique(np.linspace(0, len(vectors) - 1, min(len(vectors), UNIT_NORM_SAMPLE)))
    norms = np.linalg.norm(np.asarray(vectors[rows.astype(np.int64)], dtype=np.float32), axis=1)
    return bool(len(norms)) and bool(np.all(np.abs(norms - 1.0) <= tolerance))


def _memory_trial(vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, k: int) -> Trial:
    """The norm-ordered exact search, as serving runs it on the same vectors."""
    search = NormOrderedSearch(vectors)
    return _timed(MEMORY, {}, {"memory": 1}, search.nearest, queries, truth, k)


def _timed(
    kind: str,
    params: dict[str, Any],
    search_params: dict[str, int],
    nearest: Any,
    queries: np.ndarray,
    truth: np.ndarray,
    k: int,
) -> Trial:
    recalls, times = [], []
    for query, expected in zip(queries, truth, strict=True):
        started = time.perf_counter()
        found, _, _ = nearest(query, k)
        times.append((time.perf_counter() - started) * 1000)
        recalls.append(len(np.intersect1d(found, expected)) / len(expected))
    return Trial(
        kind,
        params,
        search_params,
        float(np.mean(recalls)),
        float(np.percentile(times, 50)),
        float(np.percentile(times, 99)),
    )


def _choice(column: str, k: int, best: Trial, trials: list[Trial]) -> IndexChoice:
    return IndexChoice(
        column=column,
        metric=METRIC,
        kind=best.kind,
        params=best.params,
        search=best.search,
        recall_at_k=round(best.recall, 4),
        k=k,
        p50_ms=round(best.p50_ms, 3),
        p99_ms=round(best.p99_ms, 3),
        tried=[t.as_dict() for t in trials],
    )


def create_scalar_indexes(table: Any, btree: list[str], label_lists: list[str]) -> None:
    for column in btree:
        table.create_index(column, config=BTree())
    for column in label_lists:
        table.create_index(column, config=LabelList())


def probe_queries(
    user_vectors: np.ndarray, item_vectors: np.ndarray, count: int, rng: np.random.Generator
) -> np.ndarray:
    """Real queries for measuring an index: user vectors, or item vectors when users are few.

    The item vectors (mapped, at 10M items 15 GB) are read by rows: a chunk at a time to find the
    non-zero ones, then only the rows picked."""
    pool = user_vectors[np.abs(user_vectors).sum(axis=1) > 0]
    items = np.zeros(0, dtype=np.int64)
    if len(pool) < count:
        items = np.flatnonzero(_non_zero_rows(item_vectors))
    total = len(pool) + len(items)
    picked = rng.choice(total, size=min(count, total), replace=False)
    out = np.empty((len(picked), item_vectors.shape[1]), dtype=np.float32)
    of_users = picked < len(pool)
    out[of_users] = pool[picked[of_users]]
    out[~of_users] = item_vectors[items[picked[~of_users] - len(pool)]]
    return out


def _non_zero_rows(vectors: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    out = np.empty(len(vectors), dtype=bool)
    for start in range(0, len(vectors), chunk):
        out[start : start + chunk] = np.abs(vectors[start : start + chunk]).sum(axis=1) > 0
    return out
