"""Reference recommenders to measure the engine against offline.

Each baseline fits on a users x items training matrix of endorsement weights (>= 0; a zero is no
interaction) and recommends, for given users, the n best items they have not interacted with in
training, best first. Every scorer produces a dense (users, items) score block for at most
`BATCH_USERS` users at a time; trained items are set to -inf and `top_unseen` picks the rest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from pipelines import cf
from pipelines.ease import ease_weights, gram
from pipelines.evaluation.metrics import (
    NO_ITEM,
    mean_at_k,
    ndcg_at_k,
    relevant_sets,
    users_per_item,
)
from pipelines.neighbours import item_similarity

BATCH_USERS = 256
EASE_MAX_ITEMS = 20_000


class Baseline(Protocol):
    name: str

    def fit(self, train: sp.csr_matrix) -> None:
        """Learn from a users x items matrix of endorsement weights (>= 0)."""
        ...

    def recommend(self, users: np.ndarray, n: int) -> np.ndarray:
        """(len(users), n) item indices, training items excluded, best first; `NO_ITEM` pads
        the row of a user with fewer than n unseen items."""
        ...


def top_unseen(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n highest scores per row of a (rows, items) array, best first; equal
    scores go by lower index, also at the cut. Slots whose score is -inf (trained items) or NaN
    become NO_ITEM. Modifies NaN scores in place."""
    scores[np.isnan(scores)] = -np.inf
    rows = np.arange(len(scores))
    nth = np.argpartition(-scores, n - 1, axis=1)[:, n - 1]
    cut = scores[rows, nth][:, None]
    above = scores > cut
    at_cut = scores == cut
    # of the items tied at the cut, the lowest-indexed fill the slots the higher ones leave
    room = n - above.sum(axis=1, keepdims=True)
    chosen = above | (at_cut & (np.cumsum(at_cut, axis=1) <= room))
    candidates = np.nonzero(chosen)[1].reshape(len(scores), n)
    picked = np.take_along_axis(scores, candidates, axis=1)
    order = np.lexsort((candidates, -picked), axis=1)
    top = np.take_along_axis(candidates, order, axis=1).astype(np.int64)
    top[np.take_along_axis(picked, order, axis=1) == -np.inf] = NO_ITEM
    return top


def _as_train(train: sp.spmatrix) -> sp.csr_matrix:
    matrix = sp.csr_matrix(train, dtype=np.float32, copy=True)
    matrix.sum_duplicates()
    if matrix.nnz and matrix.data.min() < 0:
        raise ValueError("training weights must be >= 0 (a zero is no interaction)")
    matrix.eliminate_zeros()
    return matrix


class ScoringBaseline(ABC):
    """A baseline that scores every item for a batch of users; recommending is shared."""

    name: str
    _train: sp.csr_matrix | None = None

    def fit(self, train: sp.csr_matrix) -> None:
        self._train = _as_train(train)
        self._fit(self._train)

    @abstractmethod
    def _fit(self, train: sp.csr_matrix) -> None: ...

    @abstractmethod
    def _scores(self, users: np.ndarray) -> np.ndarray:
        """A fresh, writable (len(users), n_items) float32 array."""

    def recommend(self, users: np.ndarray, n: int) -> np.ndarray:
        if self._train is None:
            raise RuntimeError(f"{self.name}: call fit() before recommend()")
        n_items = self._train.shape[1]
        if not 1 <= n <= n_items:
            raise ValueError(f"n must be between 1 and the {n_items} items, got {n}")
        users = np.asarray(users, dtype=np.int64)
        out = np.empty((len(users), n), dtype=np.int64)
        for start in range(0, len(users), BATCH_USERS):
            batch = users[start : start + BATCH_USERS]
            scores = self._scores(batch)
            seen = self._train[batch]
            rows = np.repeat(np.arange(len(batch)), np.diff(seen.indptr))
            scores[rows, seen.indices] = -np.inf
            out[start : start + len(batch)] = top_unseen(scores, n)
        return out


class Popularity(ScoringBaseline):
    """The same list for everyone: items by number of distinct users, repeats not counted."""

    name = "popularity"

    def _fit(self, train: sp.csr_matrix) -> None:
        self.counts = users_per_item(train).astype(np.float32)

    def _scores(self, users: np.ndarray) -> np.ndarray:
        return np.tile(self.counts, (len(users), 1))


class EASE(ScoringBaseline):
    """Embarrassingly Shallow Autoencoder (Steck 2019): item-item weights in closed form,
    B = I - P / diag(P) with P = (X^T X + lambda I)^-1, so diag(B) = 0.

    The Gram matrix is dense items x items float32 (400 MB at 10,000 items) and is inverted in
    place into B; above `max_items` fit() refuses rather than swap. `binarize=False` fits on the
    endorsement weights instead of 0/1.
    """

    name = "ease"

    def __init__(
        self, lambda_: float = 500.0, *, binarize: bool = True, max_items: int = EASE_MAX_ITEMS
    ) -> None:
        if lambda_ <= 0:
            raise ValueError(f"lambda_ must be > 0, got {lambda_}")
        self.lambda_ = lambda_
        self.binarize = binarize
        self.max_items = max_items

    def _fit(self, train: sp.csr_matrix) -> None:
        self._x = self._input(train)
        self.weights = ease_weights(gram(self._x, self.max_items), self.lambda_, overwrite=True)

    def _input(self, train: sp.csr_matrix) -> sp.csr_matrix:
        return sp.csr_matrix(train > 0, dtype=np.float32) if self.binarize else train

    def _scores(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self._x[users] @ self.weights, dtype=np.float32)


@dataclass
class EaseTuning:
    model: EASE  # fitted with the chosen lambda
    lambda_: float
    ndcg: dict[float, float]  # NDCG@k on the validation users, per lambda tried


def tune_ease(
    train: sp.csr_matrix,
    valid: sp.csr_matrix,
    lambdas: Sequence[float] = (50, 100, 200, 500, 1000, 2000),
    *,
    k: int = 10,
    binarize: bool = True,
    max_items: int = EASE_MAX_ITEMS,
) -> EaseTuning:
    """Choose EASE's lambda by mean NDCG@k on `valid` (same shape as `train`; a positive entry is
    a relevant held-out item) over the users with any. Ties go to the earlier lambda in the grid.
    The Gram matrix is computed once and shared by every lambda; memory peaks at three dense
    items x items float32 matrices (Gram, best B so far, the B being computed)."""
    if not lambdas:
        raise ValueError("lambdas must not be empty")
    if valid.shape != train.shape:
        raise ValueError(f"valid has shape {valid.shape}, train {train.shape}")
    users = np.flatnonzero(np.diff(sp.csr_matrix(valid > 0).indptr))
    relevant = relevant_sets(valid, users)
    n = min(k, train.shape[1])
    # fit() by hand, so the Gram matrix is computed once for the whole grid
    model = EASE(lambdas[0], binarize=binarize, max_items=max_items)
    model._train = _as_train(train)
    model._x = model._input(model._train)
    g = gram(model._x, max_items)
    ndcg: dict[float, float] = {}
    best, best_weights = lambdas[0], None
    for lambda_ in lambdas:
        model.weights = ease_weights(g, lambda_)
        ndcg[lambda_] = mean_at_k(ndcg_at_k, model.recommend(users, n), relevant, k)
        if best_weights is None or ndcg[lambda_] > ndcg[best]:
            best, best_weights = lambda_, model.weights
        model.weights = best_weights  # a losing B is freed before the next one is computed
    assert best_weights is not None
    model.lambda_, model.weights = best, best_weights
    return EaseTuning(model, best, ndcg)


class ItemKNN(ScoringBaseline):
    """Item-based nearest neighbours: shrunk cosine similarity between item columns,
    s(i, j) = x_i . x_j / (|x_i| |x_j| + shrink), keeping each item's k most similar other
    items; a user's score for item j is the sum of their weights times s(i, j)."""

    name = "item_knn"

    def __init__(self, k: int = 100, shrink: float = 10.0) -> None:
        if k < 1 or shrink < 0:
            raise ValueError(f"need k >= 1 and shrink >= 0, got k={k}, shrink={shrink}")
        self.k = k
        self.shrink = shrink

    def _fit(self, train: sp.csr_matrix) -> None:
        self.similarity = item_similarity(train, self.k, self.shrink)

    def _scores(self, users: np.ndarray) -> np.ndarray:
        assert self._train is not None
        return np.asarray((self._train[users] @ self.similarity).toarray(), dtype=np.float32)


class ALS(ScoringBaseline):
    """implicit's ALS on log1p-damped weights (as pipelines.cf.interaction_matrix damps summed
    endorsement weights: pass raw sums, not that matrix, or they are damped twice); a user's
    score for an item is the dot product of their factors. `threads` is implicit's worker
    count (0: one per core); BLAS itself is held to one thread while fitting, as implicit asks.
    """

    name = "als"

    def __init__(
        self,
        factors: int = 64,
        iterations: int = 20,
        regularization: float = 0.05,
        alpha: float = 2.0,
        *,
        seed: int,
        threads: int = 1,
    ) -> None:
        self.factors = factors
        self.iterations = iterations
        self.regularization = regularization
        self.alpha = alpha
        self.seed = seed
        self.threads = threads

    def _fit(self, train: sp.csr_matrix) -> None:
        # The same factorisation the build trains (pipelines.cf), on the same damped weights.
        cfg = {
            "factors": self.factors,
            "iterations": self.iterations,
            "regularization": self.regularization,
            "alpha": self.alpha,
            "threads": self.threads,
            "seed": self.seed,
        }
        model = cf.fit("als", cf.damped(train), cfg)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)

    def _scores(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T


class ContentOnly(ScoringBaseline):
    """Cosine similarity between item vectors and a user profile: the mean of the (unit) vectors
    of the user's trained items, weighted by endorsement. A user with no training items scores
    every item 0."""

    name = "content"

    def __init__(self, item_vectors: np.ndarray) -> None:
        vectors = np.asarray(item_vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"item_vectors must be (items, dim), got shape {vectors.shape}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.item_vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)

    def _fit(self, train: sp.csr_matrix) -> None:
        if train.shape[1] != len(self.item_vectors):
            raise ValueError(
                f"train has {train.shape[1]} items, item_vectors {len(self.item_vectors)}"
            )

    def _scores(self, users: np.ndarray) -> np.ndarray:
        assert self._train is not None
        profiles = np.asarray(self._train[users] @ self.item_vectors, dtype=np.float32)
        norms = np.linalg.norm(profiles, axis=1, keepdims=True)
        profiles = np.divide(profiles, norms, out=np.zeros_like(profiles), where=norms > 0)
        return profiles @ self.item_vectors.T
