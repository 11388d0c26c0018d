"""ANN recall@k and query speed against exact brute-force search, per vector column.

The queries are what serving asks with: a seeded sample of users' CF vectors (for `cf_vector`)
and content profiles (for `content_vector`). The exact answer is a numpy scan of the items
table's column, streamed in batches so a 10M-item column is never held at once. The ANN answer
is the served search itself (`VectorIndex.nearest`: LanceDB's async API with the manifest's
search parameters), so the recall measured here is the recall requests get.

Content vectors of a version with a vector file are read as serving reads them, mapped (at 10M
items the column is 15 GB: decoded, and again sorted, it did not fit beside a runtime); the
exact scans are then timed on the mapped file, as fast as the page cache keeps it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa

from app.candidates.ann import VectorIndex, memory_search
from app.candidates.partitioned_search import KIND as PARTITIONED
from app.candidates.partitioned_search import Partitions
from app.items import content_rows
from app.mapped_rows import RowGather, VectorRows, rows_between
from app.quantized_rows import CONTENT_INT8_ABOVE, as_served
from app.store import ITEMS, USERS, CatalogRoot, CatalogVersion

COLUMNS = ("cf_vector", "content_vector")
SCAN_BATCH = 100_000
EXACT_TIMED = 20  # single-query exact scans timed (each reads the whole column from memory)


def _matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    width = array.type.list_size
    flat = array.values.to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat.reshape(-1, width), dtype=np.float32)


def _scan(table: Any, columns: list[str]) -> Any:
    """The table's rows, only `columns`, SCAN_BATCH at a time."""
    return table.search().select(columns).limit(None).to_batches(SCAN_BATCH)


def _read_matrix(table: Any, column: str) -> np.ndarray:
    parts = [_matrix(batch.column(column)) for batch in _scan(table, [column])]
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def column_in_order(table: Any, column: str) -> np.ndarray:
    """A vector column as an (n, d) array in item_index (or user_index) order."""
    key = "item_index" if "item_index" in table.schema.names else "user_index"
    ids, parts = [], []
    for batch in _scan(table, [key, column]):
        ids.append(batch.column(key).to_numpy())
        parts.append(_matrix(batch.column(column)))
    return np.concatenate(parts)[np.argsort(np.concatenate(ids), kind="stable")]


def exact_top_k(table: Any, column: str, queries: np.ndarray, k: int) -> np.ndarray:
    """item_index of the k largest dot products per query, best first (a streamed numpy scan)."""
    best_ids = np.full((len(queries), 0), -1, dtype=np.int64)
    best_scores = np.zeros((len(queries), 0), dtype=np.float32)
    for batch in _scan(table, ["item_index", column]):
        ids = batch.column("item_index").to_numpy().astype(np.int64)
        scores = queries @ _matrix(batch.column(column)).T
        ids_all = np.concatenate([best_ids, np.broadcast_to(ids, scores.shape)], axis=1)
        scores_all = np.concatenate([best_scores, scores], axis=1)
        keep = min(k, scores_all.shape[1])
        top = np.argpartition(-scores_all, keep - 1, axis=1)[:, :keep]
        best_ids = np.take_along_axis(ids_all, top, axis=1)
        best_scores = np.take_along_axis(scores_all, top, axis=1)
    order = np.argsort(-best_scores, axis=1, kind="stable")
    return np.take_along_axis(best_ids, order, axis=1)


def served_vectors(version: CatalogVersion, table: Any, column: str) -> VectorRows:
    """`column`'s vectors in item_index order as serving holds them: content vectors mapped
    from the version's file when it has one, others decoded from the table."""
    manifest = version.manifest
    if column == "content_vector" and manifest.content_file:
        file = version.path / manifest.content_file
        return content_rows(table, file, manifest.items_table_version, table.count_rows())
    return column_in_order(table, column)


def exact_query_ms(vectors: VectorRows, queries: np.ndarray, k: int) -> dict[str, float]:
    """Per-query time of exact search over `vectors` (numpy matvec + argpartition): what brute
    force would cost a request, without decoding the column. A mapped file's rows are read in
    sequential chunks, so its time includes reading them from the page cache (or the disk)."""
    times = []
    for query in queries[:EXACT_TIMED]:
        started = time.perf_counter()
        scores = _scores(vectors, query)
        top = np.argpartition(-scores, min(k, len(scores)) - 1)[:k]
        top[np.argsort(-scores[top])]
        times.append((time.perf_counter() - started) * 1000)
    return _percentiles(times)


def _scores(vectors: VectorRows, query: np.ndarray) -> np.ndarray:
    """All rows' dot products with `query`; a mapped file is read in sequential chunks (it is
    advised random for requests, and faulting 15 GB in a page at a time takes minutes)."""
    if isinstance(vectors, np.memmap | RowGather):
        return np.concatenate(
            [
                rows_between(vectors, s, s + SCAN_BATCH) @ query
                for s in range(0, len(vectors), SCAN_BATCH)
            ]
        )
    return vectors @ query


def _percentiles(times: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(times, 50)), 2),
        "p99_ms": round(float(np.percentile(times, 99)), 2),
    }


def sample_queries(users: Any, column: str, count: int, seed: int) -> np.ndarray:
    """`count` non-zero user vectors of `column`, seeded."""
    vectors = _read_matrix(users, column)
    pool = np.flatnonzero(np.abs(vectors).sum(axis=1) > 0)
    rng = np.random.default_rng(seed)
    picked = rng.choice(pool, size=min(count, len(pool)), replace=False)
    return vectors[np.sort(picked)]


async def _ann(
    index: VectorIndex, queries: np.ndarray, k: int
) -> tuple[list[np.ndarray], list[float]]:
    found, times = [], []
    for query in queries[:3]:  # warm the index's caches
        await index.nearest(query, k)
    for query in queries:
        started = time.perf_counter()
        items, _ = await index.nearest(query, k)
        times.append((time.perf_counter() - started) * 1000)
        found.append(items)
    return found, times


async def _measure(db: Any, queries: int, k: int, seed: int, int8_above: int) -> dict[str, Any]:
    version = CatalogRoot(db).open()
    manifest = version.manifest
    sync_items, sync_users = version.table(ITEMS), version.table(USERS)
    adb = await lancedb.connect_async(str(version.path.resolve()))
    table = await adb.open_table(ITEMS)
    report: dict[str, Any] = {"version": manifest.version, "items": manifest.counts["items"]}
    columns: dict[str, Any] = {}
    for column in COLUMNS:
        choice = manifest.indexes[column]
        memory = None
        partitions = Partitions.load(version.path, column) if choice.kind == PARTITIONED else None
        vectors = served_vectors(version, sync_items, column)
        if choice.search.get("memory") or partitions is not None:
            # served from memory: the same structure serving builds, on the same rows
            searched = as_served(vectors, int8_above) if column == "content_vector" else vectors
            memory = memory_search(searched, choice.search, partitions)
            del searched
        index = VectorIndex(table, column, choice.search, choice.k, memory=memory)
        asked = sample_queries(sync_users, column, queries, seed)
        truth = exact_top_k(sync_items, column, asked, k)
        found, times = await _ann(index, asked, k)
        recalls = [
            len(np.intersect1d(f, t)) / max(1, len(t)) for f, t in zip(found, truth, strict=True)
        ]
        columns[column] = {
            "index": choice.kind,
            "search": choice.search,
            "queries": len(asked),
            "k": k,
            f"recall@{k}": round(float(np.mean(recalls)), 4),
            f"recall@{k}_min": round(float(np.min(recalls)), 4),
            "ann": _percentiles(times),
            "exact_numpy": exact_query_ms(vectors, asked, k),
        }
        del vectors, memory, index
    report["columns"] = columns
    return report


def ann_recall(
    db: Any,
    queries: int = 200,
    k: int = 1000,
    seed: int = 0,
    content_int8_above: int = CONTENT_INT8_ABOVE,
) -> dict[str, Any]:
    """Recall@k of each vector column's served search against exact search, and both speeds
    (exact: numpy over the float32 vectors)."""
    return asyncio.run(_measure(db, queries, k, seed, content_int8_above))
