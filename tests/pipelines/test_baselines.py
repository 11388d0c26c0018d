from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.evaluation.baselines import (
    ALS,
    EASE,
    Baseline,
    ContentOnly,
    ItemKNN,
    Popularity,
    ScoringBaseline,
    item_similarity,
    top_unseen,
    tune_ease,
)
from pipelines.evaluation.metrics import NO_ITEM

N_PER_GROUP = 20
N_USERS = 2 * N_PER_GROUP
N_ITEMS = 2 * N_PER_GROUP


def checkerboard() -> sp.csr_matrix:
    """Users 0-19 endorse items 0-19 (group A), users 20-39 items 20-39 (group B), with weights
    1-3; each user misses exactly the five own-group items with (user + item) % 4 == 0."""
    dense = np.zeros((N_USERS, N_ITEMS), dtype=np.float32)
    for u in range(N_USERS):
        group = u // N_PER_GROUP
        for i in range(group * N_PER_GROUP, (group + 1) * N_PER_GROUP):
            if (u + i) % 4:
                dense[u, i] = 1 + (u * i) % 3
    return sp.csr_matrix(dense)


def group_vectors(n_items: int) -> np.ndarray:
    """Content vectors that say which group an item belongs to, plus a little per-item noise."""
    rng = np.random.default_rng(5)
    vectors = rng.uniform(0, 0.1, (n_items, 4)).astype(np.float32)
    vectors[np.arange(n_items), (np.arange(n_items) // N_PER_GROUP) % 2] += 1.0
    return vectors


FACTORIES: dict[str, Callable[[int], ScoringBaseline]] = {
    "popularity": lambda n_items: Popularity(),
    "ease": lambda n_items: EASE(10.0),
    "item_knn": lambda n_items: ItemKNN(k=10, shrink=1.0),
    "als": lambda n_items: ALS(factors=4, iterations=15, regularization=0.01, seed=7),
    "content": lambda n_items: ContentOnly(group_vectors(n_items)),
}


def test_every_baseline_is_a_baseline():
    for name, make in FACTORIES.items():
        model: Baseline = make(N_ITEMS)
        assert model.name == name


@pytest.fixture(scope="module")
def board() -> sp.csr_matrix:
    return checkerboard()


# --- known answers --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ease", "item_knn", "als", "content"])
def test_checkerboard_recommends_the_users_missing_own_group_items(board, name):
    model = FACTORIES[name](N_ITEMS)
    model.fit(board)
    users = np.arange(N_USERS)
    top = model.recommend(users, 5)
    for u in users:
        group = u // N_PER_GROUP
        missing = {
            i for i in range(group * N_PER_GROUP, (group + 1) * N_PER_GROUP) if (u + i) % 4 == 0
        }
        assert set(top[u].tolist()) == missing, (name, u)


def test_popularity_counts_distinct_users_and_skips_seen_items():
    # users per item: 0 -> 1 (but with a huge weight), 1 -> 4, 2 -> 3, 3 -> 2, 4 -> 0
    train = sp.csr_matrix(
        np.array(
            [
                [50.0, 1.0, 1.0, 1.0, 0.0],
                [0.0, 1.0, 1.0, 1.0, 0.0],
                [0.0, 1.0, 1.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0, 0.0],
            ],
            dtype=np.float32,
        )
    )
    model = Popularity()
    model.fit(train)
    top = model.recommend(np.array([3, 0, 2]), 3)
    np.testing.assert_array_equal(top[0], [2, 3, 0])
    np.testing.assert_array_equal(top[1], [4, NO_ITEM, NO_ITEM])  # user 0 has seen 4 of 5 items
    np.testing.assert_array_equal(top[2], [3, 0, 4])


def test_ease_weights_are_per_item_ridge_regressions():
    """Each column of B regresses that item on all the others with an L2 penalty lambda."""
    x = np.array(
        [[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1], [1, 1, 1, 0], [0, 0, 1, 1]], dtype=np.float64
    )
    lam = 0.5
    model = EASE(lam)
    model.fit(sp.csr_matrix(x * 3.0))  # binarised: weights do not matter
    for j in range(x.shape[1]):
        others = [i for i in range(x.shape[1]) if i != j]
        a = x[:, others]
        expected = np.linalg.solve(a.T @ a + lam * np.eye(len(others)), a.T @ x[:, j])
        np.testing.assert_allclose(model.weights[others, j], expected, rtol=1e-4, atol=1e-5)
        assert model.weights[j, j] == 0.0


def test_ease_refuses_a_catalog_above_max_items(board):
    with pytest.raises(ValueError, match="max_items=30"):
        EASE(10.0, max_items=30).fit(board)
    with pytest.raises(ValueError):
        EASE(0.0)


def test_item_similarity_is_shrunk_cosine_with_top_k_neighbours():
    x = sp.csr_matrix(
        np.array([[1, 1, 0], [1, 0, 1], [1, 1, 1], [0, 0, 1]], dtype=np.float32)
    )  # column norms sqrt(3), sqrt(2), sqrt(3)
    s = item_similarity(x, k=2, shrink=1.0).toarray()
    s01 = 2 / (np.sqrt(3) * np.sqrt(2) + 1)
    s02 = 2 / (3 + 1)
    s12 = 1 / (np.sqrt(2) * np.sqrt(3) + 1)
    np.testing.assert_allclose(s, [[0, s01, s02], [s01, 0, s12], [s02, s12, 0]], rtol=1e-5)
    # one neighbour each: item 0's best is item 1, item 1's and item 2's best is item 0
    s1 = item_similarity(x, k=1, shrink=1.0).toarray()
    np.testing.assert_allclose(s1, [[0, s01, s02], [s01, 0, 0], [0, 0, 0]], rtol=1e-5)


def test_content_profile_is_the_endorsement_weighted_mean():
    vectors = np.array([[1, 0], [0, 1], [1, 1], [1, -1], [0, 1]], dtype=np.float32)
    # profile along (3, 1): item 2 (cos .89) > item 3 (.45) > item 4 (.32)
    weighted = sp.csr_matrix(np.array([[3, 1, 0, 0, 0]], dtype=np.float32))
    # profile along (1, 1): item 2 (cos 1) > item 4 (.71) > item 3 (0)
    even = sp.csr_matrix(np.array([[1, 1, 0, 0, 0]], dtype=np.float32))
    model = ContentOnly(vectors)
    model.fit(weighted)
    np.testing.assert_array_equal(model.recommend(np.array([0]), 3), [[2, 3, 4]])
    model.fit(even)
    np.testing.assert_array_equal(model.recommend(np.array([0]), 3), [[2, 4, 3]])
    with pytest.raises(ValueError):
        model.fit(sp.csr_matrix((1, 4), dtype=np.float32))


def test_top_unseen_breaks_ties_by_lower_index_and_pads():
    scores = np.array([[1.0, 3.0, 3.0, 3.0, -np.inf], [-np.inf, 2.0, -np.inf, np.nan, -np.inf]])
    np.testing.assert_array_equal(top_unseen(scores, 3), [[1, 2, 3], [1, NO_ITEM, NO_ITEM]])


# --- ALS ------------------------------------------------------------------------------------------


def test_als_same_seed_same_recommendations(board):
    def fit(seed: int) -> ALS:
        model = ALS(factors=4, iterations=5, seed=seed)
        model.fit(board)
        return model

    a, b, c = fit(3), fit(3), fit(4)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    np.testing.assert_array_equal(
        a.recommend(np.arange(N_USERS), 5), b.recommend(np.arange(N_USERS), 5)
    )
    assert not np.array_equal(a.item_factors, c.item_factors)


# --- tune_ease ------------------------------------------------------------------------------------


def clustered(seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Users like items of their cluster, with popularity skew and noise; 20% held out."""
    rng = np.random.default_rng(seed)
    n_users, n_items, clusters = 300, 120, 6
    user_cluster = rng.integers(0, clusters, n_users)
    item_cluster = np.arange(n_items) % clusters
    popularity = np.minimum((rng.pareto(1.0, n_items) + 1) / 2, 3)
    p = np.where(user_cluster[:, None] == item_cluster[None, :], 0.25, 0.02) * popularity
    endorsed = (rng.random((n_users, n_items)) < p).astype(np.float32)
    held = rng.random((n_users, n_items)) < 0.2
    return sp.csr_matrix(endorsed * ~held), sp.csr_matrix(endorsed * held)


def test_tune_ease_picks_the_best_lambda_of_the_grid():
    train, valid = clustered(0)
    grid = (0.1, 1.0, 10.0, 100.0, 1000.0)
    tuning = tune_ease(train, valid, grid)
    assert tuning.lambda_ in grid
    assert set(tuning.ndcg) == set(grid)
    assert tuning.ndcg[tuning.lambda_] == max(tuning.ndcg.values())
    assert tuning.ndcg[tuning.lambda_] > min(tuning.ndcg.values())
    assert tuning.model.lambda_ == tuning.lambda_
    # the returned model is the one a plain fit with that lambda gives
    plain = EASE(tuning.lambda_)
    plain.fit(train)
    np.testing.assert_allclose(tuning.model.weights, plain.weights, rtol=1e-4, atol=1e-6)
    users = np.arange(50)
    np.testing.assert_array_equal(tuning.model.recommend(users, 10), plain.recommend(users, 10))


def test_tune_ease_checks_its_inputs(board):
    with pytest.raises(ValueError):
        tune_ease(board, board[:10], (1.0,))
    with pytest.raises(ValueError):
        tune_ease(board, board, ())


# --- contract: every baseline ---------------------------------------------------------------------


@pytest.mark.parametrize("name", FACTORIES)
def test_recommend_before_fit_and_bad_n_are_refused(board, name):
    model = FACTORIES[name](N_ITEMS)
    with pytest.raises(RuntimeError):
        model.recommend(np.array([0]), 3)
    model.fit(board)
    for n in (0, N_ITEMS + 1):
        with pytest.raises(ValueError):
            model.recommend(np.array([0]), n)


@pytest.mark.parametrize("name", FACTORIES)
def test_batches_give_the_same_answer_as_one_user_at_a_time(board, name, monkeypatch):
    model = FACTORIES[name](N_ITEMS)
    model.fit(board)
    users = np.array([5, 30, 5, 0, 39, 21, 12])
    together = model.recommend(users, 8)
    monkeypatch.setattr("pipelines.evaluation.baselines.BATCH_USERS", 2)
    assert together.shape == (len(users), 8) and together.dtype == np.int64
    apart = model.recommend(users, 8)
    if isinstance(model, ALS):
        # BLAS rounds a (2, d) @ (d, items) product differently from a (7, d) one in the last
        # bits, so items tied in exact arithmetic may swap: compare the scores of the picks.
        scores = model.user_factors[users] @ model.item_factors.T
        np.testing.assert_allclose(
            np.take_along_axis(scores, apart, axis=1),
            np.take_along_axis(scores, together, axis=1),
            rtol=1e-5,
        )
    else:
        np.testing.assert_array_equal(apart, together)


@st.composite
def interactions(draw: st.DrawFn) -> tuple[sp.csr_matrix, int]:
    n_users = draw(st.integers(1, 8))
    n_items = draw(st.integers(1, 12))
    weights = draw(
        st.lists(
            st.sampled_from([0.0, 0.0, 0.0, 1.0, 2.5]),
            min_size=n_users * n_items,
            max_size=n_users * n_items,
        )
    )
    n = draw(st.integers(1, n_items))
    matrix = np.array(weights, dtype=np.float32).reshape(n_users, n_items)
    return sp.csr_matrix(matrix), n


@pytest.mark.parametrize("name", FACTORIES)
@settings(max_examples=30, deadline=None)
@given(case=interactions())
def test_never_recommends_trained_items_nor_twice(name, case):
    train, n = case
    model = FACTORIES[name](train.shape[1])
    model.fit(train)
    users = np.arange(train.shape[0])
    top = model.recommend(users, n)
    assert top.shape == (len(users), n)
    dense = train.toarray() > 0
    for u in users:
        unseen = int((~dense[u]).sum())
        filled = top[u][top[u] != NO_ITEM]
        # every unseen item is used before a slot is left empty, and empties come last
        assert len(filled) == min(n, unseen)
        assert (top[u][len(filled) :] == NO_ITEM).all()
        assert len(set(filled.tolist())) == len(filled)
        assert not dense[u, filled].any()
