from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from app.events import EVENT_TYPES, event_weights
from pipelines.stats import DAY, endorsed_sum, item_stats, user_stats

T0 = 1_700_000_000 - 1_700_000_000 % int(DAY)  # midnight UTC
HOUR = 3_600


def make_events(
    rows: list[tuple[int, int, int, str, float | None]],
) -> tuple[pd.DataFrame, np.ndarray]:
    """(user_index, item_index, timestamp, event, value) rows, as pipelines.build makes them."""
    events = pd.DataFrame(rows, columns=["user_index", "item_index", "timestamp", "event", "value"])
    events["user_index"] = events["user_index"].astype(np.int64)
    events["item_index"] = events["item_index"].astype(np.int64)
    events["timestamp"] = events["timestamp"].astype(np.int64)
    events["value"] = events["value"].astype(float)
    weights = event_weights(events["event"].to_numpy(), events["value"].to_numpy(), 5.0)
    return events, weights


# --- item_stats -----------------------------------------------------------------------------------


def test_item_counts_ratings_and_first_seen():
    events, weights = make_events(
        [
            (0, 0, T0 + 50, "view", None),
            (0, 0, T0 + 10, "view", None),  # a repeat: one more event, not one more user
            (1, 0, T0 + 30, "rating", 4.0),
            (2, 0, T0 + 40, "rating", 2.0),
            (1, 1, T0 + 99, "dismiss", None),
            (2, 1, T0 + 20, "rating", None),  # a rating without a value is no rating to average
        ]
    )
    stats = item_stats(events, weights, n_items=3, reference_time=T0 + 100, half_life_days=30)
    assert stats.n_events.tolist() == [4, 2, 0]
    assert stats.n_users.tolist() == [3, 2, 0]
    assert stats.mean_rating[0] == pytest.approx(3.0)
    assert np.isnan(stats.mean_rating[1]) and np.isnan(stats.mean_rating[2])
    assert stats.first_seen.tolist() == [T0 + 10, T0 + 20, -1]
    # view 1 + view 1 + rating 4 (1.8) + rating 2 (0); dismiss 0 + valueless rating (0.8 -> 1.8)
    np.testing.assert_allclose(stats.popularity, [3.8, 1.8, 0.0], rtol=1e-6)


def test_popularity_halves_every_half_life():
    half_life = 10.0
    ref = T0 + 100 * int(DAY)
    events, weights = make_events(
        [
            (0, 0, ref, "purchase", None),  # age 0: weight 3
            (0, 1, ref - int(half_life * DAY), "purchase", None),  # one half-life: 1.5
            (0, 2, ref - int(2 * half_life * DAY), "purchase", None),  # two: 0.75
            (1, 2, ref - int(half_life * DAY), "view", None),  # one: 0.5
            (0, 3, ref + int(DAY), "view", None),  # after the reference time: not boosted
        ]
    )
    stats = item_stats(events, weights, n_items=5, reference_time=ref, half_life_days=half_life)
    np.testing.assert_allclose(stats.popularity, [3.0, 3.0, 4.0, 1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(stats.popularity_decayed, [3.0, 1.5, 1.25, 1.0, 0.0], rtol=1e-6)
    # percentile rank of the decayed popularity: 0 for the least, 1 for the most popular
    np.testing.assert_allclose(stats.popularity_pct, [1.0, 0.75, 0.5, 0.25, 0.0])


def test_equal_popularity_shares_a_percentile():
    # items 1-4 were never seen; 0 and 5 have the same popularity
    events, weights = make_events([(0, 0, T0, "view", None), (1, 5, T0, "view", None)])
    stats = item_stats(events, weights, n_items=6, reference_time=T0, half_life_days=30)
    pct = stats.popularity_pct
    assert pct[1] == pct[2] == pct[3] == pct[4] < pct[0] == pct[5]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 4),
            st.integers(0, 6),
            st.integers(0, 60),
            st.sampled_from(EVENT_TYPES),
            st.sampled_from([None, 1.0, 3.0, 5.0]),
        ),
        max_size=40,
    ),
    st.floats(0.5, 100),
)
def test_item_stats_invariants(rows, half_life):
    events, weights = make_events([(u, i, T0 + t * int(DAY), e, v) for u, i, t, e, v in rows])
    ref = T0 + 60 * int(DAY)
    stats = item_stats(events, weights, n_items=7, reference_time=ref, half_life_days=half_life)
    assert (stats.n_users <= stats.n_events).all()
    assert ((stats.n_users > 0) == (stats.n_events > 0)).all()
    assert (stats.popularity_decayed <= stats.popularity * (1 + 1e-6) + 1e-6).all()
    assert (stats.popularity_decayed >= 0).all()
    assert ((stats.popularity_pct >= 0) & (stats.popularity_pct <= 1)).all()
    more = stats.popularity_decayed[:, None] > stats.popularity_decayed[None, :] + 1e-4
    assert (stats.popularity_pct[:, None] > stats.popularity_pct[None, :])[more].all()
    assert ((stats.first_seen == -1) == (stats.n_events == 0)).all()


# --- user_stats -----------------------------------------------------------------------------------

GENRES = [["drama"], ["drama", "comedy"], ["horror"], ["comedy"], ["drama"]]
CONTENT = np.eye(5, 4, dtype=np.float32)  # item 4 has a zero vector
IDS = np.array(["a", "b", "c", "d", "e"], dtype=object)


def run_user_stats(rows, n_users: int, recent: int = 10, half_life: float = 10.0):
    events, weights = make_events(rows)
    return user_stats(events, weights, IDS, GENRES, CONTENT, n_users, recent, half_life)


def test_user_counts_and_active_days():
    stats = run_user_stats(
        [
            (0, 0, T0 + 1 * HOUR, "view", None),
            (0, 1, T0 + 23 * HOUR, "rating", 1.0),  # same day, not positive
            (0, 2, T0 + 25 * HOUR, "dismiss", None),  # next day
            (0, 3, T0 + 5 * int(DAY), "click", None),
            (1, 0, T0, "rating", 4.0),
        ],
        n_users=3,
    )
    assert stats.n_events.tolist() == [4, 1, 0]
    assert stats.n_positive.tolist() == [2, 1, 0]
    assert stats.active_days.tolist() == [3, 1, 0]
    assert stats.first_seen[0] == T0 + HOUR and stats.last_seen[0] == T0 + 5 * int(DAY)


def test_recent_items_newest_first_without_repeats():
    stats = run_user_stats(
        [
            (0, 0, T0 + 10, "view", None),
            (0, 1, T0 + 20, "view", None),
            (0, 0, T0 + 30, "click", None),
            (0, 2, T0 + 5, "view", None),
            (0, 3, T0 + 25, "rating", 1.0),
        ],
        n_users=1,
    )
    assert stats.recent_items == [["a", "d", "b", "c"]]
    capped = run_user_stats(
        [(0, i, T0 + 10 * i, "view", None) for i in range(5)], n_users=1, recent=2
    )
    assert capped.recent_items == [["e", "d"]]


def test_dismissed_and_consumed():
    stats = run_user_stats(
        [
            (0, 0, T0, "view", None),
            (0, 1, T0 + 1, "dismiss", None),  # dismissed only: not consumed
            (0, 2, T0 + 2, "view", None),
            (0, 2, T0 + 3, "dismiss", None),  # seen, then dismissed: consumed and dismissed
            (0, 3, T0 + 4, "rating", 1.0),  # a 1-star rating is still an interaction
            (1, 4, T0, "dismiss", None),
        ],
        n_users=3,
    )
    assert stats.dismissed_items == [["b", "c"], ["e"], []]
    assert [c.tolist() for c in stats.consumed] == [[0, 2, 3], [], []]
    assert all(c.dtype == np.int32 for c in stats.consumed)


def test_genre_shares_count_only_endorsements():
    stats = run_user_stats(
        [
            (0, 0, T0, "view", None),  # drama
            (0, 1, T0, "view", None),  # drama + comedy
            (0, 2, T0, "rating", 1.0),  # horror, but a 1-star rating
            (0, 2, T0, "dismiss", None),
            (1, 2, T0, "purchase", None),
            (1, 3, T0, "view", None),
            (2, 2, T0, "dismiss", None),
        ],
        n_users=3,
    )
    assert stats.top_genres[0] == ["drama", "comedy"]
    assert stats.genre_shares[0] == pytest.approx([2 / 3, 1 / 3], abs=1e-4)
    # purchase weighs 3, view 1
    assert stats.top_genres[1] == ["horror", "comedy"]
    assert stats.genre_shares[1] == pytest.approx([0.75, 0.25], abs=1e-4)
    assert stats.top_genres[2] == [] and stats.genre_shares[2] == []


def test_content_profile_is_recency_weighted_and_normalised():
    last = T0 + 30 * int(DAY)
    stats = run_user_stats(
        [
            (0, 0, last, "view", None),
            (0, 1, last - 10 * int(DAY), "view", None),  # one half-life older: half the weight
            (0, 2, last, "dismiss", None),
            (1, 3, T0, "rating", 1.0),  # nothing endorsed
            (1, 2, T0, "dismiss", None),
        ],
        n_users=3,
        half_life=10.0,
    )
    expected = np.array([1.0, 0.5, 0.0, 0.0]) / np.hypot(1.0, 0.5)
    np.testing.assert_allclose(stats.content_profile[0], expected, rtol=1e-5)
    assert not stats.content_profile[1].any()
    assert not stats.content_profile[2].any()  # no events at all
    assert stats.content_profile.dtype == np.float32


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(0, 4),
            st.integers(0, 10 * 24),
            st.sampled_from(EVENT_TYPES),
            st.sampled_from([None, 1.0, 5.0]),
        ),
        max_size=40,
    ),
    st.integers(1, 6),
)
def test_user_stats_invariants(rows, recent):
    rows = [(u, i, T0 + h * HOUR, e, v) for u, i, h, e, v in rows]
    stats = run_user_stats(rows, n_users=4, recent=recent)
    events, weights = make_events(rows)
    for u in range(4):
        mine = events[events["user_index"] == u]
        assert stats.n_events[u] == len(mine)
        assert len(stats.recent_items[u]) == len(set(stats.recent_items[u]))
        assert len(stats.recent_items[u]) == min(recent, mine["item_index"].nunique())
        # newest first: each listed item's last event is no older than the next one's
        last_ts = mine.groupby("item_index")["timestamp"].max()
        position = {item_id: n for n, item_id in enumerate(IDS)}
        listed = [position[i] for i in stats.recent_items[u]]
        assert list(last_ts[listed]) == sorted(last_ts[listed], reverse=True)
        if listed:
            assert last_ts[listed[0]] == last_ts.max()
        dismiss_only = set(mine["item_index"]) - set(
            mine.loc[mine["event"] != "dismiss", "item_index"]
        )
        assert not dismiss_only & set(stats.consumed[u].tolist())
        assert set(stats.consumed[u].tolist()) | dismiss_only == set(mine["item_index"])
        norm = np.linalg.norm(stats.content_profile[u])
        endorsed = (weights[(events["user_index"] == u).to_numpy()] >= 1.0).any()
        # the only item with a zero content vector is 4
        endorsed_vector = any(
            w >= 1.0 and i != 4
            for w, i in zip(
                weights[(events["user_index"] == u).to_numpy()], mine["item_index"], strict=True
            )
        )
        assert norm == pytest.approx(1.0 if endorsed_vector else 0.0, abs=1e-5)
        assert sum(stats.genre_shares[u]) == pytest.approx(1.0 if endorsed else 0.0, abs=1e-3)


def test_endorsed_sum_a_block_at_a_time_equals_the_whole_product(tmp_path) -> None:
    """Read from a mapped file in blocks of rows (one block with no endorsement at all), the
    sum equals the product taken at once."""
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((23, 6)).astype(np.float32)
    np.save(tmp_path / "v.npy", vectors)
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    dense = rng.random((9, 23)).astype(np.float32) * (rng.random((9, 23)) < 0.3)
    dense[:, 14:21] = 0.0  # the block of rows 14..20 (block=7) is endorsed by nobody
    endorse = sp.csr_matrix(dense)
    for block in (1, 7, 23, 100):
        got = endorsed_sum(endorse, mapped, block=block)
        assert got.dtype == np.float32 and got.shape == (9, 6)
        np.testing.assert_allclose(got, dense @ vectors, rtol=1e-5, atol=1e-6)
