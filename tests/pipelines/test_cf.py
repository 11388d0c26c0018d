from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from app.events import event_weights
from pipelines import cf
from pipelines.cf import EVAL_K, hit_rate, interaction_matrix, leave_last_out, train_cf

ROOT = Path(__file__).resolve().parents[2]
N_PER_GROUP = 20
N_USERS = 2 * N_PER_GROUP
# Two items beyond the groups: they only ever receive zero-weight events.
N_ITEMS = 2 * N_PER_GROUP + 2
NEGATIVE_ONLY = [N_ITEMS - 2, N_ITEMS - 1]
SILENT_USER = N_USERS  # a user with nothing but zero-weight events


def _params(**over: object) -> dict[str, object]:
    params: dict[str, object] = dict(
        factors=4, iterations=15, regularization=0.01, alpha=1.0, threads=1, seed=7
    )
    params.update(over)
    return params


def checkerboard() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Users 0-19 view items 0-19 (group A), users 20-39 view items 20-39 (group B).

    Every user misses a few items of their own group (held back so there is something to
    recommend) and has zero-weight events on the other group: 1-star ratings and dismissals.
    Columns: user_index, item_index, weights, timestamps.
    """
    users, items, kinds, values = [], [], [], []
    for u in range(N_USERS):
        group = u // N_PER_GROUP
        own = range(group * N_PER_GROUP, (group + 1) * N_PER_GROUP)
        other = range((1 - group) * N_PER_GROUP, (2 - group) * N_PER_GROUP)
        for i in own:
            if (u + i) % 4 != 0:
                users.append(u)
                items.append(i)
                kinds.append("view")
                values.append(np.nan)
        for i in list(other)[u % 5 :: 5]:
            users.append(u)
            items.append(i)
            kinds.append("rating" if i % 2 else "dismiss")
            values.append(1.0 if i % 2 else np.nan)
        for i in NEGATIVE_ONLY:
            users.append(u)
            items.append(i)
            kinds.append("dismiss")
            values.append(np.nan)
    users += [SILENT_USER, SILENT_USER]
    items += [0, N_PER_GROUP]
    kinds += ["dismiss", "rating"]
    values += [np.nan, 1.0]
    weights = event_weights(np.array(kinds, dtype=object), np.array(values), 5.0)
    timestamps = np.arange(len(users), dtype=np.int64) * 60
    return np.array(users), np.array(items), weights, timestamps


# --- interaction_matrix ---------------------------------------------------------------------------


def test_interaction_matrix_sums_repeats_damps_and_drops_zero_weights():
    users = np.array([0, 0, 0, 1, 1])
    items = np.array([2, 2, 1, 0, 2])
    weights = np.array([1.0, 1.0, 3.0, 0.0, 1.5], dtype=np.float32)
    m = interaction_matrix(users, items, weights, n_users=3, n_items=4)
    assert m.shape == (3, 4)
    dense = m.toarray()
    np.testing.assert_allclose(
        dense,
        [
            [0, np.log1p(3.0), np.log1p(2.0), 0],
            [0, 0, np.log1p(1.5), 0],
            [0, 0, 0, 0],
        ],
        rtol=1e-6,
    )
    assert m.nnz == 3  # the zero-weight (user 1, item 0) event leaves no stored entry


# --- hit_rate -------------------------------------------------------------------------------------


def test_hit_rate_on_three_hand_made_users():
    # One-hot user factors pick a row of `scores` (users x items) as each user's item scores.
    scores = np.array(
        [
            [9.0, 8.0, 1.0, 0.0, 0.0],  # item 0 is trained: item 1 is the top pick
            [9.0, 1.0, 2.0, 3.0, 0.0],  # held-out item 1 ranks last but one among unseen
            [0.0, 5.0, 6.0, 7.0, 8.0],  # held-out item 2 ranks second (item 4 is trained)
        ]
    )
    user_factors = np.eye(3)
    item_factors = scores.T.copy()
    train = interaction_matrix(
        np.array([0, 2]), np.array([0, 4]), np.ones(2, dtype=np.float32), 3, 5
    )
    users = np.array([0, 1, 2])
    held = np.array([1, 1, 2])
    assert hit_rate(user_factors, item_factors, train, users, held, k=1) == pytest.approx(1 / 3)
    assert hit_rate(user_factors, item_factors, train, users, held, k=2) == pytest.approx(2 / 3)
    assert hit_rate(user_factors, item_factors, train, users, held, k=3) == pytest.approx(2 / 3)
    assert hit_rate(user_factors, item_factors, train, users, held, k=4) == pytest.approx(1.0)
    # a subset of users, in any order
    assert hit_rate(user_factors, item_factors, train, users[[2, 1]], held[[2, 1]], k=2) == 0.5


def test_hit_rate_never_counts_a_trained_item():
    # The held-out item is also in training: it is masked, so it can never be a hit.
    user_factors = np.ones((1, 1))
    item_factors = np.array([[5.0], [1.0], [0.5]])
    train = interaction_matrix(np.array([0]), np.array([0]), np.ones(1, np.float32), 1, 3)
    assert hit_rate(user_factors, item_factors, train, np.array([0]), np.array([0]), k=1) == 0.0


def test_hit_rate_scores_a_bounded_block_of_users_at_a_time(monkeypatch):
    # 300 users over 200,000 items: scored 256 users at a time, the scores, their negated copy
    # and argpartition's indices held about 870 MB at once.
    rng = np.random.default_rng(5)
    n_users, n_items = 300, 200_000
    user_factors = rng.normal(size=(n_users, 8)).astype(np.float32)
    item_factors = rng.normal(size=(n_items, 8)).astype(np.float32)
    train = interaction_matrix(
        rng.integers(0, n_users, 3000),
        rng.integers(0, n_items, 3000),
        np.ones(3000, np.float32),
        n_users,
        n_items,
    )
    users = np.arange(n_users)
    held = np.argmax(user_factors @ item_factors.T, axis=1)  # each user's best item: a hit
    held[1::2] = rng.integers(0, n_items, n_users // 2)  # a random one: most likely a miss
    tracemalloc.start()
    try:
        bounded = hit_rate(user_factors, item_factors, train, users, held, k=20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 400 * 2**20
    monkeypatch.setattr(cf, "SCORE_BUDGET", 1 << 40)  # every user at once: the same answer
    assert hit_rate(user_factors, item_factors, train, users, held, k=20) == bounded
    assert 0 < bounded < 1


# --- leave_last_out -------------------------------------------------------------------------------


def test_leave_last_out_holds_out_each_users_last_positive_pair():
    #          user: 0  0  0  0  0   1  1   2  2  2
    users = np.array([0, 0, 0, 0, 0, 1, 1, 2, 2, 2])
    items = np.array([5, 1, 2, 3, 7, 1, 2, 4, 5, 6])
    kinds = ["view", "view", "view", "view", "dismiss", "view", "view", "view", "view", "view"]
    times = np.array([10, 20, 30, 40, 99, 1, 2, 3, 2, 1])
    # user 0: last positive is item 3 at t=40 (the later dismissal is no endorsement), and
    #         an earlier event on item 3 would be dropped too: add one.
    users = np.r_[users, 0]
    items = np.r_[items, 3]
    kinds = [*kinds, "click"]
    times = np.r_[times, 5]
    weights = event_weights(np.array(kinds, dtype=object), np.full(len(kinds), np.nan))
    mask, held_users, held_items = leave_last_out(
        users, items, weights, times, np.random.default_rng(0)
    )
    # user 1 has only two positives: not evaluated. user 2's last positive (by time) is item 4.
    assert sorted(zip(held_users.tolist(), held_items.tolist(), strict=True)) == [(0, 3), (2, 4)]
    dropped = {(int(u), int(i)) for u, i in zip(users[~mask], items[~mask], strict=True)}
    assert dropped == {(0, 3), (2, 4)}
    assert (~mask).sum() == 3  # both events on (0, 3) and the one on (2, 4)


# --- train_cf -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def board() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return checkerboard()


@pytest.mark.parametrize("algorithm", ["als", "bpr"])
def test_checkerboard_recommends_own_group(board, algorithm):
    users, items, weights, times = board
    model = train_cf(
        users, items, weights, times, N_USERS + 1, N_ITEMS, algorithm=algorithm, **_params()
    )
    assert model.algorithm == algorithm
    assert model.user_factors.shape == (N_USERS + 1, 4)
    assert model.item_factors.shape == (N_ITEMS, 4)
    assert model.user_factors.dtype == model.item_factors.dtype == np.float32

    scores = model.user_factors[:N_USERS] @ model.item_factors[: 2 * N_PER_GROUP].T
    group = np.arange(N_USERS) // N_PER_GROUP
    top = np.argsort(-scores, axis=1)[:, :10] // N_PER_GROUP
    assert (top == group[:, None]).all()
    # including the items each user has not seen yet: the held-back own-group items
    train = interaction_matrix(users, items, weights, N_USERS, 2 * N_PER_GROUP).toarray() > 0
    masked = np.where(train[:N_USERS], -np.inf, scores)
    best_unseen = np.argmax(masked, axis=1) // N_PER_GROUP
    assert (best_unseen == group).all()


@pytest.mark.parametrize("algorithm", ["als", "bpr"])
def test_zero_weight_events_leave_no_trace(board, algorithm):
    users, items, weights, times = board
    model = train_cf(
        users, items, weights, times, N_USERS + 1, N_ITEMS, algorithm=algorithm, **_params()
    )
    # items that only ever got dismissals and 1-star ratings, and the user who only gave those
    assert not model.item_factors[NEGATIVE_ONLY].any()
    assert not model.user_factors[SILENT_USER].any()
    assert np.abs(model.item_factors[: 2 * N_PER_GROUP]).sum(axis=1).min() > 0

    positive = weights > 0
    only_positive = train_cf(
        users[positive],
        items[positive],
        weights[positive],
        times[positive],
        N_USERS + 1,
        N_ITEMS,
        algorithm=algorithm,
        **_params(),
    )
    np.testing.assert_array_equal(model.user_factors, only_positive.user_factors)
    np.testing.assert_array_equal(model.item_factors, only_positive.item_factors)


@pytest.mark.parametrize("algorithm", ["als", "bpr"])
def test_same_seed_same_factors(board, algorithm):
    users, items, weights, times = board
    args = (users, items, weights, times, N_USERS + 1, N_ITEMS)
    a = train_cf(*args, algorithm=algorithm, **_params(seed=3))
    b = train_cf(*args, algorithm=algorithm, **_params(seed=3))
    c = train_cf(*args, algorithm=algorithm, **_params(seed=4))
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    assert not np.array_equal(a.item_factors, c.item_factors)


def test_auto_measures_both_and_keeps_the_better(board):
    users, items, weights, times = board
    model = train_cf(
        users, items, weights, times, N_USERS + 1, N_ITEMS, algorithm="auto", **_params()
    )
    als, bpr = (
        model.measurements[f"als_hit_rate@{EVAL_K}"],
        model.measurements[f"bpr_hit_rate@{EVAL_K}"],
    )
    assert 0.0 <= als <= 1.0 and 0.0 <= bpr <= 1.0
    assert model.measurements["eval_users"] == N_USERS  # every board user has >= 3 positives
    assert model.algorithm in ("als", "bpr")
    assert model.measurements[f"{model.algorithm}_hit_rate@{EVAL_K}"] == max(als, bpr)
    assert model.params["seed"] == 7 and model.params["factors"] == 4


def test_auto_with_too_few_eval_users_falls_back_to_als(board):
    users, items, weights, times = board
    few = users < 10  # ten evaluable users: fewer than the twenty a comparison needs
    model = train_cf(
        users[few], items[few], weights[few], times[few], 10, N_ITEMS, algorithm="auto", **_params()
    )
    assert model.algorithm == "als"
    assert model.measurements == {"eval_users": 10.0}


def test_first_fit_in_a_fresh_process_is_quiet():
    """BLAS is limited to one thread for the whole fit, including libraries that implicit loads
    (a limit entered before they are imported does not reach them, and implicit then warns)."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("BLAS runs one thread on a single CPU: nothing to limit")
    script = textwrap.dedent(
        """
        import numpy as np
        from pipelines.cf import train_cf
        users, items = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 2])
        train_cf(users, items, np.ones(4, np.float32), np.arange(4), 2, 3, algorithm="als",
                 factors=4, iterations=2, regularization=0.01, alpha=1.0, threads=1, seed=0)
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_compacted_fit_gives_zero_factors_to_rows_without_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At catalog scale the fit skips empty users and items; they get zero vectors, the rest
    are fitted (two taste blocks: each user's own block scores above the other)."""
    from pipelines import cf

    monkeypatch.setattr(cf, "COMPACT_MIN_ITEMS", 10)
    users = np.repeat(np.arange(0, 40, 2), 5)  # odd users have no events
    items = (users % 4 == 0) * 20 + np.tile(np.arange(0, 10, 2), 20)  # odd items never seen
    matrix = cf.interaction_matrix(users, items, np.ones(len(users)), 41, 40)
    cfg = {"factors": 8, "iterations": 15, "regularization": 0.01, "alpha": 2.0, "threads": 1,
           "seed": 0}  # fmt: skip
    user_f, item_f = cf.fit_factors("als", matrix, cfg)
    assert user_f.shape == (41, 8) and item_f.shape == (40, 8)
    assert not user_f[1::2].any() and not item_f[1::2].any()
    scores = user_f[0] @ item_f.T  # user 0 is in the block of items 20..28
    assert scores[20:30:2].min() > scores[0:10:2].max()
