"""CF fold-in: implicit's own user solve, against fixed item factors, from a few events."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

from app.realtime.fold_in import FoldIn, History
from pipelines.cf import fit


def _blocks(n_users: int = 200, n_items: int = 40, seed: int = 0) -> sp.csr_matrix:
    """Two taste blocks (implicit's checkerboard idea): even users like items 0-19, odd 20-39."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for user in range(n_users):
        block = 0 if user % 2 == 0 else 20
        for item in rng.choice(20, size=12, replace=False):
            rows.append(user)
            cols.append(block + int(item))
    data = np.log1p(np.ones(len(rows), dtype=np.float32))
    return sp.csr_matrix((data, (rows, cols)), shape=(n_users, n_items), dtype=np.float32)


def _als(matrix: sp.csr_matrix) -> AlternatingLeastSquares:
    """Fitted the way the build fits (pipelines.cf, BLAS held to one thread)."""
    cfg = {"factors": 8, "regularization": 0.05, "alpha": 2.0, "iterations": 15}
    return fit("als", matrix, {**cfg, "threads": 1, "seed": 1})


def test_solve_is_implicits_recalculate_user() -> None:
    model = _als(_blocks())
    factors = np.asarray(model.item_factors)
    fold = FoldIn(factors, np.ones(len(factors), bool), alpha=2.0, regularization=0.05)
    items = np.array([1, 5, 22, 30])
    weights = np.array([1.0, 3.0, 1.5, 0.6])
    row = sp.csr_matrix(
        (np.log1p(weights).astype(np.float32), (np.zeros(4, int), items)), shape=(1, 40)
    )
    expected = model.recalculate_user(0, row)
    assert np.allclose(fold.solve(items, weights), expected, rtol=1e-3, atol=1e-4)


def test_a_new_user_with_three_views_gets_their_block() -> None:
    model = _als(_blocks())
    factors = np.asarray(model.item_factors)
    fold = FoldIn(factors, np.ones(len(factors), bool), alpha=2.0, regularization=0.05)
    vector = fold.solve(np.array([2, 7, 11]), np.ones(3))
    assert vector is not None
    scores = factors @ vector
    unseen = [i for i in np.argsort(-scores).tolist() if i not in {2, 7, 11}]
    assert set(unseen[:10]) <= set(range(20)), f"outside the viewed block: {unseen[:10]}"
    assert scores[:20].mean() > scores[20:].mean() + 0.1


def test_nothing_to_fold_gives_no_vector() -> None:
    factors = np.eye(4, dtype=np.float32)
    in_cf = np.array([True, True, False, False])
    fold = FoldIn(factors, in_cf, alpha=2.0, regularization=0.1)
    assert fold.solve(np.array([2, 3]), np.ones(2)) is None  # items without CF factors
    assert fold.solve(np.array([0]), np.zeros(1)) is None  # no endorsement
    assert fold.solve(np.array([99]), np.ones(1)) is None  # appended after the build


def test_live_endorsements_add_to_the_batch_history() -> None:
    model = _als(_blocks())
    factors = np.asarray(model.item_factors)
    fold = FoldIn(factors, np.ones(len(factors), bool), alpha=2.0, regularization=0.05)

    class Catalog:
        index = pd.Index([f"i{n}" for n in range(40)])

        def indices_of(self, ids):
            return np.asarray(self.index.get_indexer(pd.Index(ids)), dtype=np.int64)

    history = History(np.array([1, 2]), np.array([1.0, 2.0]))
    live = {"i2": 1.0, "i30": 3.0, "unknown": 1.0}
    combined = fold.solve_with(history, live, Catalog())  # type: ignore[arg-type]
    direct = fold.solve(np.array([1, 2, 30]), np.array([1.0, 3.0, 3.0]))
    assert combined is not None and np.allclose(combined, direct)
    assert History.empty().mass == 0.0 and history.mass == 3.0


def test_the_gram_matrix_is_summed_a_block_of_rows_at_a_time() -> None:
    """YtY for the fold-in's solve, without a float64 copy of every item's factors at once."""
    from app.realtime.fold_in import _gram

    factors = np.random.default_rng(3).standard_normal((1_000, 8)).astype(np.float32)
    wide = factors.astype(np.float64)
    np.testing.assert_allclose(_gram(factors, block=64), wide.T @ wide, rtol=1e-12)
    assert _gram(factors[:0]).shape == (8, 8) and not _gram(factors[:0]).any()
