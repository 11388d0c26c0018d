"""EASE item-item weights (Steck 2019) for the `ease` candidate source and ranking feature.

B = I - P / diag(P) with P = (X^T X + lambda I)^-1, so diag(B) = 0, fitted on the endorsement
weights (a 5-star rating counts more than a 3-star one). The dense inverse costs O(n^3), so the
model covers the `max_items` items with the widest audiences (items seen by at least two users);
the long tail is left to the other sources. Lambda is chosen on a temporal validation split
from a grid relative to the mean diagonal of the Gram matrix, so it carries across datasets of
any size. Serving keeps the dense weights over the covered items (negative weights matter for
the order: keeping only each item's strongest weights cost 5% NDCG on MovieLens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse as sp

from app.events import event_weights
from pipelines.cf import endorsement_matrix
from pipelines.split import temporal_split

# Item-item products (the Gram matrix) are built a dense (items x block) slice at a time.
BLOCK_ITEMS = 1024
LAMBDA_GRID = (10.0, 30.0, 100.0, 300.0)  # multiples of the Gram matrix's mean diagonal
MIN_USERS = 2
BATCH_USERS = 512


def gram(x: sp.csr_matrix, max_items: int) -> np.ndarray:
    """Dense X^T X as float32, built a block of item columns at a time so no sparse
    items x items product is ever held; refuses catalogs above max_items."""
    n_items = x.shape[1]
    if n_items > max_items:
        gib = 2 * 4 * n_items**2 / 2**30
        raise ValueError(
            f"EASE needs dense {n_items} x {n_items} matrices (about {gib:.1f} GiB); that is "
            f"above max_items={max_items}. Evaluate on a subset of items or raise max_items."
        )
    by_item = sp.csr_matrix(x.T, dtype=np.float32)
    by_user = sp.csc_matrix(x, dtype=np.float32)
    g = np.empty((n_items, n_items), dtype=np.float32)
    for start in range(0, n_items, BLOCK_ITEMS):
        stop = min(start + BLOCK_ITEMS, n_items)
        g[:, start:stop] = (by_item @ by_user[:, start:stop]).toarray()
    return g


def ease_weights(gram_matrix: np.ndarray, lambda_: float, *, overwrite: bool = False) -> np.ndarray:
    """EASE's B from a Gram matrix; with overwrite, the Gram matrix's memory is reused."""
    g = gram_matrix if overwrite else gram_matrix.copy()
    g[np.diag_indices_from(g)] += lambda_
    # g and its inverse are symmetric: passing g.T (Fortran order) lets LAPACK invert in place,
    # and transposing back gives the C order that fast sparse @ dense products need.
    p = scipy.linalg.inv(g.T, overwrite_a=True, check_finite=False).T
    p /= -np.diag(p)[None, :]
    np.fill_diagonal(p, 0.0)
    return np.ascontiguousarray(p, dtype=np.float32)


def covered_items(train: sp.csr_matrix, max_items: int) -> np.ndarray:
    """The items EASE models: seen by at least MIN_USERS users, the widest audiences first,
    at most max_items, returned in ascending index order."""
    audience = np.diff(sp.csc_matrix(train > 0).indptr)
    eligible = np.flatnonzero(audience >= MIN_USERS)
    widest = eligible[np.argsort(-audience[eligible], kind="stable")[:max_items]]
    return np.sort(widest)


@dataclass
class EaseModel:
    """Dense EASE weights over the covered items, at two strengths of regularisation.

    `deep` (lambda chosen for recall at the source's depth) feeds the ease candidate source:
    stronger regularisation reaches further down the list. `top` (lambda chosen for NDCG@10) is
    a ranking feature. Where both choose the same lambda, they are the same array.
    """

    items: np.ndarray  # (m,) int64 item_index covered, ascending
    deep: np.ndarray  # (m, m) float32, zero diagonal
    top: np.ndarray
    lambdas: dict[str, float]  # {"deep": ..., "top": ...}
    validation: dict[str, dict[str, float]] = field(default_factory=dict)  # per lambda tried


def fit(
    train: sp.csr_matrix,
    max_items: int,
    lambdas: dict[str, float] | None = None,
    valid: sp.csr_matrix | None = None,
    grid: Sequence[float] = LAMBDA_GRID,
    depth: int = 1000,
) -> EaseModel | None:
    """EASE on users x items endorsement weights; None when no item has MIN_USERS users.

    Without `lambdas`, both are chosen on `valid` (same shape as train, positive entries are
    relevant held-out items) from `grid` times the Gram matrix's mean diagonal: "deep" by
    recall@depth, "top" by NDCG@10.
    """
    covered = covered_items(train, max_items)
    if len(covered) < 2:
        return None
    x = sp.csr_matrix(train[:, covered], dtype=np.float32)
    g = gram(x, max_items)
    if lambdas is not None:
        deep = ease_weights(g, lambdas["deep"])
        same = lambdas["top"] == lambdas["deep"]
        top = deep if same else ease_weights(g, lambdas["top"], overwrite=True)
        return EaseModel(covered.astype(np.int64), deep, top, dict(lambdas))
    if valid is None:
        raise ValueError("EASE needs lambdas or a validation matrix to choose them")
    valid = sp.csr_matrix(valid[:, covered] > 0)
    scale = float(np.mean(np.diag(g))) or 1.0
    best: dict[str, tuple[float, float, np.ndarray]] = {}  # criterion -> (score, lambda, B)
    tried: dict[str, dict[str, float]] = {}
    for multiple in sorted(grid):
        lambda_ = multiple * scale
        weights = ease_weights(g, lambda_)
        recall, ndcg = _validate(x, weights, valid, depth)
        tried[f"{lambda_:.1f}"] = {f"recall@{depth}": round(recall, 4), "ndcg@10": round(ndcg, 4)}
        for criterion, score in (("deep", recall), ("top", ndcg)):
            if criterion not in best or score > best[criterion][0]:
                best[criterion] = (score, lambda_, weights)
        del weights  # a losing B is freed once no criterion holds it
    del g
    return EaseModel(
        covered.astype(np.int64),
        best["deep"][2],
        best["top"][2],
        {criterion: chosen[1] for criterion, chosen in best.items()},
        tried,
    )


def _validate(
    x: sp.csr_matrix, weights: np.ndarray, valid: sp.csr_matrix, depth: int, k: int = 10
) -> tuple[float, float]:
    """Mean recall@depth and NDCG@k over users with held-out positives, trained items
    excluded."""
    users = np.flatnonzero(np.diff(valid.indptr))
    if not len(users):
        return 0.0, 0.0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    recalls, ndcgs = [], []
    for start in range(0, len(users), BATCH_USERS):
        batch = users[start : start + BATCH_USERS]
        scores = np.asarray(x[batch] @ weights, dtype=np.float32)
        seen = x[batch]
        scores[np.repeat(np.arange(len(batch)), np.diff(seen.indptr)), seen.indices] = -np.inf
        truth = valid[batch]
        n_relevant = np.diff(truth.indptr)
        rows = np.arange(len(batch))[:, None]
        deep = np.argpartition(-scores, min(depth, scores.shape[1]) - 1, axis=1)[:, :depth]
        recalls.append(np.asarray(truth[rows, deep].sum(axis=1)).ravel() / n_relevant)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1)
        hits = np.asarray(truth[rows, top].todense()) > 0
        idcg = np.cumsum(discounts)[np.minimum(n_relevant, k) - 1]
        ndcgs.append((hits * discounts).sum(axis=1) / idcg)
    return float(np.mean(np.concatenate(recalls))), float(np.mean(np.concatenate(ndcgs)))


def validation_matrix(
    later: pd.DataFrame,
    user_ids: pd.Index,
    item_index: pd.Index,
    top_rating: float,
    seen: sp.csr_matrix,
) -> sp.csr_matrix:
    """users x items of `later` endorsements not already in `seen` (the training matrix)."""
    weights = event_weights(later["event"].to_numpy(), later["value"].to_numpy(), top_rating)
    valid = endorsement_matrix(
        user_ids.get_indexer(pd.Index(later["user_id"])),
        item_index.get_indexer(pd.Index(later["item_id"])),
        weights,
        *seen.shape,
    )
    return _unseen(valid, seen)


def fit_on_events(
    audience: sp.csr_matrix,
    events: pd.DataFrame,
    weights: np.ndarray,
    *,
    lambdas: dict[str, float] | None,
    valid: sp.csr_matrix | None,
    max_items: int,
    holdout: float,
    depth: int,
) -> EaseModel | None:
    """EASE on the endorsement matrix `audience` (rows: events.user_index, columns:
    events.item_index). Without lambdas or a validation matrix, they are first chosen on an
    inner temporal split of `events` (`holdout` of each user's latest events)."""
    if lambdas is None and valid is None:
        inner = temporal_split(events, holdout)
        users, items = events["user_index"].to_numpy(), events["item_index"].to_numpy()
        earlier = endorsement_matrix(users[inner], items[inner], weights[inner], *audience.shape)
        later = endorsement_matrix(users[~inner], items[~inner], weights[~inner], *audience.shape)
        tuned = fit(earlier, max_items, None, _unseen(later, earlier), depth=depth)
        if tuned is None:
            return None
        lambdas = tuned.lambdas
    return fit(audience, max_items, lambdas, valid, depth=depth)


def _unseen(matrix: sp.csr_matrix, seen: sp.csr_matrix) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix - matrix.multiply(seen > 0))
    out.eliminate_zeros()
    return out
