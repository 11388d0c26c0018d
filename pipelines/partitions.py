"""Learning the partitions of an in-memory partitioned search (`app.candidates.partitioned_search`).

Spherical k-means on a sample gives the centroids (inner product is the metric, so centroids are
kept at unit norm); every row then goes to its nearest centroid. The projection is the leading
eigenvectors of the sample's uncentred second-moment matrix: the directions that best preserve
inner products with queries drawn from the same space.
"""

from __future__ import annotations

import numpy as np

from app.candidates.partitioned_search import Partitions, nearest_centroid

SAMPLE_PER_PARTITION = 64
SEEDING_PER_PARTITION = 8  # k-means++ seeds are drawn from a smaller sample: it is sequential
ITERATIONS = 10
PROJECTED_DIM = 64


def partition_count(rows: int) -> int:
    """About sqrt(n) partitions (1,024 at 1M rows), a power of two between 16 and 4,096."""
    target = max(16, min(4096, int(np.sqrt(rows))))
    return 1 << round(float(np.log2(target)))


def fit_partitions(
    vectors: np.ndarray,
    rng: np.random.Generator,
    partitions: int | None = None,
    projected_dim: int = PROJECTED_DIM,
) -> Partitions:
    n, dim = vectors.shape
    p = min(n, partitions or partition_count(n))
    picked = np.sort(rng.choice(n, size=min(n, p * SAMPLE_PER_PARTITION), replace=False))
    sample = np.ascontiguousarray(vectors[picked], dtype=np.float32)
    centroids = _spherical_kmeans(sample, p, rng)
    second_moment = (sample.T.astype(np.float64) @ sample) / len(sample)
    _, eigenvectors = np.linalg.eigh(second_moment)
    width = min(dim, projected_dim)
    projection = np.ascontiguousarray(eigenvectors[:, ::-1][:, :width], dtype=np.float32)
    return Partitions(centroids, projection, nearest_centroid(vectors, centroids))


def _spherical_kmeans(sample: np.ndarray, p: int, rng: np.random.Generator) -> np.ndarray:
    seeding = rng.choice(
        len(sample), size=min(len(sample), SEEDING_PER_PARTITION * p), replace=False
    )
    centroids = _seeds(_unit(sample[np.sort(seeding)]), p, rng)
    for _ in range(ITERATIONS):
        nearest = np.argmax(sample @ centroids.T, axis=1)
        counts = np.bincount(nearest, minlength=p)
        empty = counts == 0
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        sums = np.zeros_like(centroids)
        sums[~empty] = np.add.reduceat(sample[np.argsort(nearest)], starts[~empty], axis=0)
        # an empty partition restarts on a random row rather than staying dead
        sums[empty] = sample[rng.choice(len(sample), size=int(empty.sum()))]
        centroids = _unit(sums)
    return centroids.astype(np.float32)


def _seeds(sample: np.ndarray, p: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding on the unit sphere: each next seed drawn in proportion to its squared
    distance from the nearest seed so far (random seeds put two in one cluster and none in
    another, and Lloyd's rounds rarely repair that)."""
    chosen = [int(rng.integers(len(sample)))]
    nearest = sample @ sample[chosen[0]]
    for _ in range(1, p):
        weights = np.maximum(2.0 - 2.0 * nearest, 0.0).astype(np.float64)
        total = weights.sum()
        pick = (
            int(rng.choice(len(sample), p=weights / total))
            if total > 0
            else int(rng.integers(len(sample)))
        )
        chosen.append(pick)
        np.maximum(nearest, sample @ sample[pick], out=nearest)
    return sample[chosen].copy()


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)
