"""Item neighbours: shrunk cosine similarity between items' audiences, top k per item.

Used by the build (the `item_knn` candidate source: "people who liked what you liked also
liked") and by the item-kNN baseline of the evaluation, so both mean the same thing.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

BLOCK_ITEMS = 1024
# Each block is a dense (items x BLOCK_ITEMS) product. Catalogs above MAX_ITEMS get neighbours
# among their WIDEST_ITEMS widest-audience items only (the long tail keeps none, as with EASE):
# the cost grows with the square of the items covered.
MAX_ITEMS = 300_000
WIDEST_ITEMS = 100_000


def item_similarity(train: sp.csr_matrix, k: int, shrink: float) -> sp.csr_matrix:
    """items x items; column j holds the top-k neighbours i of item j (never j itself)."""
    n_items = train.shape[1]
    by_item = sp.csr_matrix(train.T, dtype=np.float32)
    by_user = train.tocsc()
    norms = np.sqrt(np.asarray(by_user.multiply(by_user).sum(axis=0), dtype=np.float32).ravel())
    keep = min(k, n_items - 1)
    rows, cols, vals = [], [], []
    for start in range(0, n_items, BLOCK_ITEMS):
        block = np.arange(start, min(start + BLOCK_ITEMS, n_items))
        sims = (by_item @ by_user[:, block]).toarray()  # (items, block)
        sims /= norms[:, None] * norms[None, block] + shrink + 1e-12
        sims[block, np.arange(len(block))] = 0.0
        if keep < 1:
            continue
        top = np.argpartition(-sims, keep - 1, axis=0)[:keep]  # (keep, block)
        top_sims = np.take_along_axis(sims, top, axis=0)
        positive = top_sims > 0
        rows.append(top[positive])
        cols.append(np.broadcast_to(block, top.shape)[positive])
        vals.append(top_sims[positive])
    if not rows:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_items, n_items),
        dtype=np.float32,
    )


def item_neighbours(
    train: sp.csr_matrix, k: int, shrink: float, max_items: int = MAX_ITEMS
) -> tuple[np.ndarray, np.ndarray]:
    """(neighbours int32, scores float32), both (n_items, k), best first, -1/0 padded.

    Above `max_items` items, only the WIDEST_ITEMS items with the widest audiences have (and
    are) neighbours."""
    n_items = train.shape[1]
    if n_items <= max_items:
        return _neighbours(train, k, shrink)
    audience = np.diff(sp.csc_matrix(train).indptr)
    covered = np.sort(np.argsort(-audience, kind="stable")[: min(WIDEST_ITEMS, max_items)])
    covered = covered[audience[covered] > 0]
    part, part_scores = _neighbours(sp.csr_matrix(train[:, covered]), k, shrink)
    neighbours = np.full((n_items, k), -1, dtype=np.int32)
    scores = np.zeros((n_items, k), dtype=np.float32)
    neighbours[covered] = np.where(part >= 0, covered[part.clip(0)], -1)
    scores[covered] = part_scores
    return neighbours, scores


def _neighbours(train: sp.csr_matrix, k: int, shrink: float) -> tuple[np.ndarray, np.ndarray]:
    similarity = item_similarity(train, k, shrink).tocsc()
    n_items = train.shape[1]
    neighbours = np.full((n_items, k), -1, dtype=np.int32)
    scores = np.zeros((n_items, k), dtype=np.float32)
    for item in range(n_items):
        lo, hi = similarity.indptr[item], similarity.indptr[item + 1]
        if hi == lo:
            continue
        order = np.argsort(-similarity.data[lo:hi], kind="stable")[:k]
        neighbours[item, : len(order)] = similarity.indices[lo:hi][order]
        scores[item, : len(order)] = similarity.data[lo:hi][order]
    return neighbours, scores
