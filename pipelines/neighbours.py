"""Item neighbours: shrunk cosine similarity between items' audiences, top k per item.

Used by the build (the `item_knn` candidate source: "people who liked what you liked also
liked") and by the item-kNN baseline of the evaluation, so both mean the same thing.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipelines.scale import CATALOG_SCALE_ITEMS

BLOCK_ITEMS = 1024  # at most 32,767 (block positions are int16)
# Catalogs above MAX_ITEMS get neighbours among their WIDEST_ITEMS widest-audience items only
# (the long tail keeps none, as with EASE): the cost grows with the co-occurrences covered.
MAX_ITEMS = CATALOG_SCALE_ITEMS
WIDEST_ITEMS = 100_000


def item_similarity(train: sp.csr_matrix, k: int, shrink: float) -> sp.csr_matrix:
    """items x items; column j holds the top-k neighbours i of item j (never j itself)."""
    n_items = train.shape[1]
    rows, cols, vals = _top_k_similar(train, k, shrink)
    return sp.csr_matrix((vals, (rows, cols)), shape=(n_items, n_items), dtype=np.float32)


def _top_k_similar(
    train: sp.csr_matrix, k: int, shrink: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(neighbour, item, similarity) of each item's top-k positive neighbours, ordered by item,
    then similarity (highest first), then neighbour.

    The co-occurrences of a block of items are kept sparse, one row per item of the block, and
    sorted: at catalog scale a dense (items x block) array is mostly zeros, and partitioning it
    cost 9 s a block where sorting the non-zeros costs well under one.
    """
    n_items = train.shape[1]
    by_item = sp.csr_matrix(train.T, dtype=np.float32)
    by_user = train.tocsc()
    norms = np.sqrt(np.asarray(by_user.multiply(by_user).sum(axis=0), dtype=np.float32).ravel())
    keep = min(k, n_items - 1)
    rows, cols, vals = [], [], []
    for start in range(0, n_items if keep >= 1 else 0, BLOCK_ITEMS):
        sims = by_item[start : start + BLOCK_ITEMS] @ by_user  # (block, items) co-occurrences
        sims.sort_indices()
        # int16 block positions: numpy's stable sort of 16-bit integers is a radix sort
        item = np.repeat(np.arange(sims.shape[0], dtype=np.int16), np.diff(sims.indptr))
        anchor = item.astype(np.int64) + start
        other = sims.indices.astype(np.int64)
        sim = sims.data / (norms[anchor] * norms[other] + np.float32(shrink) + np.float32(1e-12))
        positive = (sim > 0) & (other != anchor)
        item, other, sim = item[positive], other[positive], sim[positive]
        # best first within each item (stable: ties keep the lower neighbour first)
        order = np.argsort(-sim, kind="stable")
        order = order[np.argsort(item[order], kind="stable")]
        item, other, sim = item[order], other[order], sim[order]
        rank = np.arange(len(item)) - np.searchsorted(item, item, side="left")
        top = rank < keep
        rows.append(other[top])
        cols.append(item[top].astype(np.int64) + start)
        vals.append(sim[top])
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def item_neighbours(
    train: sp.csr_matrix,
    k: int,
    shrink: float,
    max_items: int = MAX_ITEMS,
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(neighbours int32, scores float32), both (n_items, k), best first, -1/0 padded.

    Above `max_items` items, only the WIDEST_ITEMS items with the widest audiences have (and
    are) neighbours. `out`: the two (n_items, k) arrays to fill and return instead of new ones
    (the build passes the version's files, memory-mapped: 4 GB at 10M items, mostly padding)."""
    n_items = train.shape[1]
    neighbours, scores = out if out is not None else _padded(n_items, k)
    if out is not None:
        neighbours[:] = -1
        scores[:] = 0.0
    if n_items <= max_items:
        _fill(train, k, shrink, neighbours, scores, np.arange(n_items))
        return neighbours, scores
    audience = np.diff(sp.csc_matrix(train).indptr)
    covered = np.sort(np.argsort(-audience, kind="stable")[: min(WIDEST_ITEMS, max_items)])
    covered = covered[audience[covered] > 0]
    _fill(sp.csr_matrix(train[:, covered]), k, shrink, neighbours, scores, covered)
    return neighbours, scores


def _padded(n_items: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n_items, k), -1, dtype=np.int32), np.zeros((n_items, k), dtype=np.float32)


def _fill(
    train: sp.csr_matrix,
    k: int,
    shrink: float,
    neighbours: np.ndarray,
    scores: np.ndarray,
    items: np.ndarray,
) -> None:
    """The top-k neighbours among `train`'s columns, which are the catalog's `items`, written
    into those items' rows as catalog item numbers."""
    rows, cols, vals = _top_k_similar(train, k, shrink)
    rank = np.arange(len(cols)) - np.searchsorted(cols, cols, side="left")
    neighbours[items[cols], rank] = items[rows]
    scores[items[cols], rank] = vals
