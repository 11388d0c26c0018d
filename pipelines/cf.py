"""Collaborative-filtering vectors: implicit-feedback matrix factorisation with `implicit`.

Events are turned into endorsement weights (app.events), summed per user and item and damped with
log1p so repeats and bursts cannot dominate. ALS and BPR are both trained when the algorithm is
'auto'; the one with the better hit rate on each user's held-out last positive item is kept and
retrained on everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from threadpoolctl import threadpool_limits

from pipelines.steps import Step

EVAL_K = 100
EVAL_MAX_USERS = 2000
# At catalog scale: the ALS/BPR choice is fitted on the events of at most this many users (every
# evaluated user among them), and fits leave out the users and items without events, which cost
# a solve per iteration and learn nothing. Smaller data sets are fitted exactly as they come.
CHOICE_MAX_USERS = 20_000
COMPACT_MIN_ITEMS = 100_000
# Users x items scored at once by `hit_rate`: 16M scores (64 MiB of float32, with the negated
# copy and argpartition's int64 indices about 270 MiB), 256 users below 65,536 items. A fixed
# 256 users held 4.4 GB at 1M items.
SCORE_BUDGET = 1 << 24


@dataclass
class CFModel:
    algorithm: str
    user_factors: np.ndarray  # (n_users, dim) float32
    item_factors: np.ndarray  # (n_items, dim) float32, zero rows for items without positives
    measurements: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


def endorsement_matrix(
    user_index: np.ndarray, item_index: np.ndarray, weights: np.ndarray, n_users: int, n_items: int
) -> sp.csr_matrix:
    """users x items, summed endorsement weights; zero-weight and unindexed (-1) events dropped."""
    keep = (weights > 0) & (user_index >= 0) & (item_index >= 0)
    matrix = sp.csr_matrix(
        (weights[keep].astype(np.float32), (user_index[keep], item_index[keep])),
        shape=(n_users, n_items),
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    return matrix


def damped(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """log1p of summed weights, so repeats and bursts cannot dominate the factorisation."""
    out = matrix.copy()
    out.data = np.log1p(out.data)
    out.eliminate_zeros()
    return out


def interaction_matrix(
    user_index: np.ndarray, item_index: np.ndarray, weights: np.ndarray, n_users: int, n_items: int
) -> sp.csr_matrix:
    """users x items, log1p of the summed endorsement weights; zero-weight events dropped."""
    return damped(endorsement_matrix(user_index, item_index, weights, n_users, n_items))


def fit(
    algorithm: str, matrix: sp.csr_matrix, cfg: dict[str, Any], step: Step | None = None
) -> Any:
    """An implicit ALS or BPR model fitted on `matrix` (already damped), BLAS held to 1 thread."""

    def tick(*_: object) -> None:
        if step is not None:
            step.advance(1)

    with threadpool_limits(1, "blas"):
        model = _model(algorithm, cfg)
        model.fit(matrix, show_progress=False, callback=tick)
    return model


def fit_factors(
    algorithm: str, matrix: sp.csr_matrix, cfg: dict[str, Any], step: Step | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(user factors, item factors) as float32 arrays for every row and column of `matrix`.

    At catalog scale (COMPACT_MIN_ITEMS) the model is fitted on the rows and columns that hold
    events only; the others get zero factors (what `train_cf` gives them anyway).
    """
    if matrix.shape[1] < COMPACT_MIN_ITEMS:
        model = fit(algorithm, matrix, cfg, step)
        return (
            np.ascontiguousarray(model.user_factors, dtype=np.float32),
            np.ascontiguousarray(model.item_factors, dtype=np.float32),
        )
    rows = np.flatnonzero(np.diff(matrix.indptr) > 0)
    cols = np.flatnonzero(np.bincount(matrix.indices, minlength=matrix.shape[1]) > 0)
    model = fit(algorithm, matrix[rows][:, cols].tocsr(), cfg, step)
    user_part = np.asarray(model.user_factors, dtype=np.float32)
    item_part = np.asarray(model.item_factors, dtype=np.float32)
    users = np.zeros((matrix.shape[0], user_part.shape[1]), dtype=np.float32)
    items = np.zeros((matrix.shape[1], item_part.shape[1]), dtype=np.float32)
    users[rows], items[cols] = user_part, item_part
    return users, items


def _choice_sample(
    user_index: np.ndarray,
    train_mask: np.ndarray,
    eval_users: np.ndarray,
    n_users: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Mask of the training events the ALS/BPR choice is fitted on: all of them, or at scale
    those of CHOICE_MAX_USERS users, every evaluated user included."""
    if n_users <= CHOICE_MAX_USERS:
        return train_mask
    others = np.setdiff1d(np.arange(n_users), eval_users)
    extra = rng.choice(others, size=max(0, CHOICE_MAX_USERS - len(eval_users)), replace=False)
    chosen = np.zeros(n_users, dtype=bool)
    chosen[eval_users] = True
    chosen[extra] = True
    return train_mask & chosen[user_index]


def _model(algorithm: str, cfg: dict[str, Any]) -> Any:
    if algorithm == "als":
        model: Any = AlternatingLeastSquares(
            factors=cfg["factors"],
            regularization=cfg["regularization"],
            alpha=cfg["alpha"],
            iterations=cfg["iterations"],
            num_threads=cfg["threads"],
            random_state=cfg["seed"],
        )
    else:
        # BPR appends a bias column to its factors: ask for one less to keep the dimension.
        model = BayesianPersonalizedRanking(
            factors=cfg["factors"] - 1,
            learning_rate=0.05,
            regularization=cfg["regularization"] / 5,
            iterations=cfg["iterations"] * 5,
            # implicit's BPR updates shared factors lock-free from every thread (Hogwild): with
            # more than one thread the same data gives a different model each run.
            num_threads=1,
            random_state=cfg["seed"],
        )
    return model


def hit_rate(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    train: sp.csr_matrix,
    users: np.ndarray,
    held_out: np.ndarray,
    k: int = EVAL_K,
) -> float:
    """Share of users whose held-out item is in their top-k (training items excluded)."""
    hits = 0
    k = min(k, item_factors.shape[0] - 1)
    per_batch = max(1, min(256, SCORE_BUDGET // item_factors.shape[0]))
    for start in range(0, len(users), per_batch):
        batch = users[start : start + per_batch]
        scores = user_factors[batch] @ item_factors.T
        seen = train[batch]
        rows = np.repeat(np.arange(len(batch)), np.diff(seen.indptr))
        scores[rows, seen.indices] = -np.inf
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        hits += int((top == held_out[start : start + len(batch), None]).any(axis=1).sum())
    return hits / max(1, len(users))


def leave_last_out(
    user_index: np.ndarray,
    item_index: np.ndarray,
    weights: np.ndarray,
    timestamps: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each sampled user's last positive event: (mask of events kept for training, users, items)."""
    positive = np.flatnonzero(weights >= 1.0)
    order = positive[np.lexsort((timestamps[positive], user_index[positive]))]
    users_sorted = user_index[order]
    last = np.flatnonzero(np.r_[users_sorted[1:] != users_sorted[:-1], True])
    first = np.r_[0, last[:-1] + 1]
    eligible = last[(last - first) >= 2]  # at least 3 positives: two stay for training
    if len(eligible) > EVAL_MAX_USERS:
        eligible = np.sort(rng.choice(eligible, EVAL_MAX_USERS, replace=False))
    held = order[eligible]
    train_mask = np.ones(len(user_index), dtype=bool)
    # drop every event on the held-out (user, item) pair, not just the last one
    width = np.int64(item_index.max()) + 1
    pair_keys = user_index.astype(np.int64) * width + item_index
    held_keys = np.unique(user_index[held].astype(np.int64) * width + item_index[held])
    train_mask[np.isin(pair_keys, held_keys)] = False
    return train_mask, user_index[held], item_index[held]


def train_cf(
    user_index: np.ndarray,
    item_index: np.ndarray,
    weights: np.ndarray,
    timestamps: np.ndarray,
    n_users: int,
    n_items: int,
    *,
    algorithm: str,
    factors: int,
    iterations: int,
    regularization: float,
    alpha: float,
    threads: int,
    seed: int,
    step: Step | None = None,
) -> CFModel:
    cfg = {
        "factors": factors,
        "iterations": iterations,
        "regularization": regularization,
        "alpha": alpha,
        "threads": threads,
        "seed": seed,
    }
    rng = np.random.default_rng(seed)
    measurements: dict[str, float] = {}
    candidates = ["als", "bpr"] if algorithm == "auto" else [algorithm]
    if step is not None:
        per_fit = {"als": iterations, "bpr": iterations * 5}
        total = sum(per_fit[a] for a in candidates) * (2 if len(candidates) > 1 else 1)
        step.set_total(total)
    chosen = candidates[0]
    if len(candidates) > 1:
        train_mask, eval_users, eval_items = leave_last_out(
            user_index, item_index, weights, timestamps, rng
        )
        if len(eval_users) >= 20:
            sample = _choice_sample(user_index, train_mask, eval_users, n_users, rng)
            train = interaction_matrix(
                user_index[sample],
                item_index[sample],
                weights[sample],
                n_users,
                n_items,
            )
            for name in candidates:
                user_f, item_f = fit_factors(name, train, cfg, step)
                measurements[f"{name}_hit_rate@{EVAL_K}"] = hit_rate(
                    user_f, item_f, train, eval_users, eval_items
                )
            chosen = max(candidates, key=lambda a: measurements[f"{a}_hit_rate@{EVAL_K}"])
        measurements["eval_users"] = float(len(eval_users))
    matrix = interaction_matrix(user_index, item_index, weights, n_users, n_items)
    user_factors, item_factors = fit_factors(chosen, matrix, cfg, step)
    seen_items = np.diff(matrix.tocsc().indptr) > 0
    item_factors[~seen_items] = 0.0
    seen_users = np.diff(matrix.indptr) > 0
    user_factors[~seen_users] = 0.0
    return CFModel(chosen, user_factors, item_factors, measurements, cfg)
