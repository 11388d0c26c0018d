"""Inner-product search in memory over partitions: probe a few, scan them projected, refine.

For unit-norm vectors at catalog scale (sentence-transformer content vectors of 1M items) the
norm-ordered search has nothing to prune and a full scan reads 1.5 GB per query. The build
clusters the vectors (spherical k-means, `pipelines.partitions`) and learns a projection onto
their leading directions; serving then

1. scores the centroids and keeps the `nprobes` partitions nearest the query,
2. scans only those partitions' rows, projected (64 floats a row instead of 384; the rows are
   stored contiguously by partition, so each partition is one matrix-vector product),
3. re-scores the `refine` x k best of them exactly on the full vectors and keeps the k best.

The build measures recall@k against exact search and writes `nprobes` and `refine` into the
manifest, as it does for LanceDB's indexes. The full vectors are the catalog's own array
(`ItemCatalog.content`, mapped from the version's file): no copy of them is made, only rows are
read from them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.candidates.base import top_k
from app.candidates.memory_search import InMemorySearch
from app.mapped_rows import MappedRows, VectorRows, rows_between
from app.quantized_rows import row_scores
from app.sorting import kth_largest

KIND = "partitioned"  # the manifest's index kind for this search
PROJECT_CHUNK = 65_536  # rows projected at a time while loading (bounds the temporary copy)


@dataclass(frozen=True)
class Partitions:
    """What the build learned about one vector column: centroids, projection, assignment."""

    centroids: np.ndarray  # (p, d) float32, unit norm
    projection: np.ndarray  # (d, r) float32, orthonormal columns
    partition_of: np.ndarray  # (n,) int32: each item_index's partition at build time

    @staticmethod
    def file(directory: Path, column: str) -> Path:
        return directory / f"{column}_partitions.npz"

    def save(self, directory: Path, column: str) -> Path:
        path = self.file(directory, column)
        np.savez(
            path,
            centroids=self.centroids,
            projection=self.projection,
            partition_of=self.partition_of,
        )
        return path

    @classmethod
    def load(cls, directory: Path, column: str) -> Partitions:
        """Raises OSError/ValueError/KeyError on a missing or damaged file (the caller names it)."""
        with np.load(cls.file(directory, column), allow_pickle=False) as data:
            found = cls(
                np.ascontiguousarray(data["centroids"], dtype=np.float32),
                np.ascontiguousarray(data["projection"], dtype=np.float32),
                np.asarray(data["partition_of"], dtype=np.int32),
            )
        p, d = found.centroids.shape
        if found.projection.shape[0] != d or found.projection.ndim != 2:
            raise ValueError(f"projection {found.projection.shape} does not fit {d}-d centroids")
        assigned = found.partition_of
        if len(assigned) and not 0 <= assigned.min() <= assigned.max() < p:
            raise ValueError(f"partition numbers outside 0..{p - 1}")
        return found

    def assign(self, vectors: VectorRows) -> np.ndarray:
        return nearest_centroid(vectors, self.centroids)


def nearest_centroid(vectors: VectorRows, centroids: np.ndarray) -> np.ndarray:
    """The partition of each row: its nearest centroid by inner product (in chunks)."""
    out = np.empty(len(vectors), dtype=np.int32)
    for start in range(0, len(vectors), PROJECT_CHUNK):
        block = rows_between(vectors, start, start + PROJECT_CHUNK)
        out[start : start + len(block)] = np.argmax(block @ centroids.T, axis=1)
    return out


class PartitionedSearch(InMemorySearch):
    """Top-k dot products over `vectors` (n, d): `nprobes` partitions scanned, `refine` x k kept."""

    projected: np.ndarray  # (n, r) float32: every row projected, stored in partition order
    position: np.ndarray  # each item_index's row of `projected`

    def __init__(
        self,
        vectors: VectorRows,
        partitions: Partitions,
        nprobes: int,
        refine: int,
        previous: PartitionedSearch | None = None,
    ) -> None:
        """`previous`: the search this one replaces (items upserted while serving); the rows it
        projected that have not changed are copied from it instead of projected again."""
        super().__init__()
        n = len(vectors)
        known = partitions.partition_of[:n]
        if len(known) < n:  # items upserted after the build: put each in its nearest partition
            known = np.concatenate([known, partitions.assign(vectors[len(known) :])])
        p = len(partitions.centroids)
        self.vectors = vectors
        self.centroids = partitions.centroids
        self.projection = partitions.projection
        self.nprobes = max(1, min(int(nprobes), p))
        self.refine = max(1, int(refine))
        self.order = np.argsort(known, kind="stable").astype(np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(np.bincount(known, minlength=p))])
        # read in item order, written in partition order: gathering the rows in partition order
        # faulted a mapped file in at random (at 10M items, hours)
        position = np.empty(n, dtype=np.int32 if n < 2**31 else np.int64)
        position[self.order] = np.arange(n)
        self.position = position
        projected = np.empty((n, self.projection.shape[1]), dtype=np.float32)
        redo = _rows_to_project(previous, vectors, partitions)
        for start in range(0, n, PROJECT_CHUNK):
            stop = min(n, start + PROJECT_CHUNK)
            if redo is None or previous is None:
                block = rows_between(vectors, start, stop) @ self.projection
            else:
                items = np.arange(start, stop)
                fresh = redo[start:stop]
                block = np.empty((stop - start, self.projection.shape[1]), dtype=np.float32)
                old = items[~fresh]
                block[~fresh] = previous.projected[previous.position[old]]
                if fresh.any():
                    block[fresh] = np.take(vectors, items[fresh], axis=0) @ self.projection
            projected[position[start:stop]] = block
        self.projected = projected

    def best_of(self, rows: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k of `rows` (item_index) with the largest dot products with `query`, best first,
        and those products: every row scored on its projection, the `refine` x k best of them
        again on the full vectors (as `nearest` refines a scan)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.refine * k < len(rows):
            reduced = np.asarray(query, dtype=np.float32) @ self.projection
            rough = np.take(self.projected, self.position[rows], axis=0) @ reduced
            rows = rows[top_k(rough, self.refine * k)]
        exact = row_scores(self.vectors, rows, query)
        best = top_k(exact, k)
        return rows[best], exact[best]

    def _nearest(
        self,
        query: np.ndarray,
        k: int,
        allows: Callable[[np.ndarray], np.ndarray] | None,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        closeness = self.centroids @ query
        probes = min(self.nprobes, len(closeness))
        probed = np.argpartition(-closeness, probes - 1)[:probes]
        reduced = query @ self.projection
        spans = [(int(self.offsets[p]), int(self.offsets[p + 1])) for p in probed]
        items = np.concatenate([self.order[lo:hi] for lo, hi in spans])
        rough = np.concatenate([self.projected[lo:hi] @ reduced for lo, hi in spans])
        scanned = len(items)
        if allows is not None:
            ok = allows(items)
            items, rough = items[ok], rough[ok]
        keep = min(len(items), self.refine * k)
        if keep < len(items):
            # the `keep` best rough scores (all of a tie at the last), the cut found from a
            # sample first (a fifth of the time a partition of the ~36k rows takes)
            items = items[rough >= kth_largest(rough, keep)]
        exact = np.asarray(np.take(self.vectors, items, axis=0), dtype=np.float32) @ query
        if len(items) > k:
            best = np.argpartition(-exact, k - 1)[:k]
            items, exact = items[best], exact[best]
        order = np.lexsort((items, -exact))  # equal scores: lower item_index first
        return items[order], exact[order], scanned


def _rows_to_project(
    previous: PartitionedSearch | None, vectors: VectorRows, partitions: Partitions
) -> np.ndarray | None:
    """Which of `vectors`' rows (a bool per item_index) may differ from the rows `previous`
    projected, when the others can be copied from it: both read the same base matrix (the
    version's file or codes) with rows held beside it (app.mapped_rows.MappedRows), onto the
    same projection. None when that cannot be told: every row is projected."""
    if previous is None or previous.projection is not partitions.projection:
        return None
    new, old = vectors, previous.vectors
    new_base = new.base if isinstance(new, MappedRows) else new
    old_base = old.base if isinstance(old, MappedRows) else old
    if new_base is not old_base:
        return None
    redo = np.zeros(len(new), dtype=bool)
    redo[len(old) :] = True  # appended since
    for held in (new, old):  # rows either holds beside the base
        if isinstance(held, MappedRows):
            redo[held.positions[held.positions < len(new)]] = True
    return redo
