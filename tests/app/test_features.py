from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain import Candidates, SourceHit, UserState
from app.features import DEVICES, FEATURE_NAMES, SOURCES, assemble, device_code
from app.items import DAY, ItemCatalog

AT = datetime(2024, 5, 1, 13, 45, tzinfo=UTC)  # a Wednesday
AT_DAY = AT.timestamp() / DAY
COL = {name: i for i, name in enumerate(FEATURE_NAMES)}
S2 = np.sqrt(0.5)


def catalog() -> ItemCatalog:
    """Six items; series 0 has positions 1 (item 1) and 2 (item 2), series 1 has 2 and 3."""
    ids = np.asarray([f"i{n}" for n in range(6)], dtype=object)
    genres = [["drama"], ["drama", "comedy"], ["horror"], ["comedy"], [], ["drama"]]
    genre_names = ["comedy", "drama", "horror"]
    genre_matrix = np.array([[g in gs for g in genre_names] for gs in genres], dtype=bool).reshape(
        6, 3
    )
    return ItemCatalog(
        ids=ids,
        index=pd.Index(ids),
        titles=ids.copy(),
        descriptions=ids.copy(),
        genres=genres,
        genre_names=genre_names,
        genre_matrix=genre_matrix,
        series=np.array([-1, 0, 0, 1, 1, -1], dtype=np.int32),
        series_names=["saga", "chronicle"],
        series_position=np.array([np.nan, 1, 2, 2, 3, np.nan]),
        released_day=AT_DAY - np.array([10.0, 20, 30, 40, 50, 60]),
        first_seen_day=AT_DAY - np.array([1.0, 2, 3, 4, 5, 6]),
        n_users=np.array([0.0, 1, 2, 3, 4, 5]),
        mean_rating=np.array([3.5, np.nan, 4.0, 2.0, 1.0, 5.0]),
        popularity=np.array([1.0, 2, 3, 4, 5, 6]),
        popularity_pct=np.linspace(0, 1, 6),
        in_cf=np.array([True, True, True, True, False, True]),
        content=np.array(
            [[1, 0, 0], [0, 1, 0], [0, 0, 1], [S2, S2, 0], [1, 0, 0], [0, 1, 0]],
            dtype=np.float32,
        ),
        cf=np.array([[1, 0], [0, 1], [1, 1], [2, 0], [0, 0], [-1, 0]], dtype=np.float32),
    )


def user(**over: object) -> UserState:
    state = UserState(
        user_id="u",
        known=True,
        cf_vector=np.array([1.0, 2.0], dtype=np.float32),
        content_vector=np.array([1.0, 0.0, 0.0], dtype=np.float32),
        recent_items=[1, 4, 99],  # 99 is not in the catalog (any more)
        consumed={1, 4},
        dismissed=set(),
        n_events=9,
        active_days=3,
        genre_shares={"drama": 0.6, "comedy": 0.4, "western": 1.0},
    )
    for key, value in over.items():
        setattr(state, key, value)
    return state


def candidates(items: list[int], hits: list[list[SourceHit]]) -> Candidates:
    return Candidates(np.asarray(items, dtype=np.int64), hits)


CANDIDATES = candidates(
    [2, 0, 5, 3, 1],
    [
        [SourceHit("cf_ann", 3, 0.9), SourceHit("popular", 7, 2.0)],
        [
            SourceHit("fresh", 2, 0.1),
            SourceHit("content_ann", 5, 0.7),
            SourceHit("item_to_item", 4, 0.3, anchor=1),
            SourceHit("exploration", 1, 0.2),
        ],
        [],
        [SourceHit("retired_source", 1, 9.0)],  # not a known source: no column, not counted
        [SourceHit("popular", 1, 6.0)],
    ],
)


def column(x: np.ndarray, name: str) -> list[float]:
    return x[:, COL[name]].tolist()


def assert_col(x: np.ndarray, name: str, expected: list[float]) -> None:
    np.testing.assert_allclose(x[:, COL[name]], expected, rtol=1e-5, atol=1e-6, err_msg=name)


def test_shape_and_names():
    x = assemble(AT, "tv", user(), CANDIDATES, catalog())
    assert x.shape == (5, len(FEATURE_NAMES)) and x.dtype == np.float32
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert {f"rank_{s}" for s in SOURCES} | {f"score_{s}" for s in SOURCES} <= set(FEATURE_NAMES)


def test_empty_candidates():
    x = assemble(AT, None, user(), Candidates.empty(), catalog())
    assert x.shape == (0, len(FEATURE_NAMES))


def test_source_ranks_scores_and_counts():
    x = assemble(AT, "tv", user(), CANDIDATES, catalog())
    nan = np.nan
    assert_col(x, "rank_cf_ann", [3, nan, nan, nan, nan])
    # scores are the share of the request's scored candidates each one beats
    assert_col(x, "score_cf_ann", [0, nan, nan, nan, nan])
    assert_col(x, "rank_popular", [7, nan, nan, nan, 1])
    assert_col(x, "score_popular", [0, nan, nan, nan, 1])
    assert_col(x, "rank_fresh", [nan, 2, nan, nan, nan])
    assert_col(x, "rank_content_ann", [nan, 5, nan, nan, nan])
    assert_col(x, "score_content_ann", [nan, 0, nan, nan, nan])
    assert_col(x, "rank_item_to_item", [nan, 4, nan, nan, nan])
    assert_col(x, "score_exploration", [nan, 0, nan, nan, nan])
    assert_col(x, "n_sources", [2, 4, 0, 0, 1])


def test_best_rank_kept_when_a_source_hits_twice():
    hits = [[SourceHit("cf_ann", 9, 0.1), SourceHit("cf_ann", 2, 0.8), SourceHit("cf_ann", 5, 0.4)]]
    x = assemble(AT, None, user(), candidates([0], hits), catalog())
    assert column(x, "rank_cf_ann") == [2.0]
    assert column(x, "score_cf_ann") == [0.0]  # the only scored candidate beats none


def test_n_sources_counts_sources_not_hits():
    hits = [
        [SourceHit("cf_ann", 9, 0.1), SourceHit("cf_ann", 2, 0.8), SourceHit("popular", 5, 1.0)]
    ]
    x = assemble(AT, None, user(), candidates([0], hits), catalog())
    assert column(x, "n_sources") == [2.0]


def test_user_item_similarities():
    x = assemble(AT, "tv", user(), CANDIDATES, catalog())
    # candidates 2, 0, 5, 3, 1; user cf (1, 2), content e0; recent items 1 and 4
    # cf dot products 3, 1, -1, 2, 2 as the share of candidates each beats (ties share)
    assert_col(x, "cf_dot", [1, 0.25, 0, 0.5, 0.5])
    assert_col(x, "content_sim", [0, 1, 0, S2, 0])
    assert_col(x, "recent_content_max", [0, 1, 1, S2, 1])
    assert_col(x, "recent_cf_max", [0.75, 0, 0, 0, 0.75])  # raw 1, 0, 0, 0, 1
    # drama 0.6, comedy 0.4; a share for a genre the catalog lacks changes nothing
    assert_col(x, "genre_affinity", [0, 0.6, 0.6, 0.4, 1.0])


def test_item_and_user_attributes():
    x = assemble(AT, "tv", user(), CANDIDATES, catalog())
    idx = [2, 0, 5, 3, 1]
    items = catalog()
    assert_col(x, "popularity_log", [0.5, 0, 1, 0.75, 0.25])  # popularity 3, 1, 6, 4, 2
    assert_col(x, "popularity_pct", items.popularity_pct[idx].tolist())
    assert_col(x, "n_users_log", [0.5, 0, 1, 0.75, 0.25])
    assert_col(x, "mean_rating", [4.0, 3.5, 5.0, 2.0, np.nan])
    assert_col(x, "item_age_days", [30, 10, 60, 40, 20])
    assert_col(x, "days_since_first_seen", [3, 1, 6, 4, 2])
    assert_col(x, "in_cf", [1, 1, 1, 1, 1])
    assert_col(x, "user_events_log", [np.log1p(9)] * 5)
    assert_col(x, "user_active_days", [3] * 5)
    assert_col(x, "series_position", [2, np.nan, np.nan, 2, 1])


def test_series_next_up():
    items = catalog()
    # consumed series 0 position 1 (item 1) and series 1 position 3 (item 4)
    x = assemble(AT, None, user(), candidates([2, 3, 1, 0, 4], [[]] * 5), items)
    assert column(x, "series_next_up") == [1.0, 0.0, 0.0, 0.0, 0.0]
    # position 3 of series 1 (item 4) is next up once position 2 (item 3) is consumed
    x = assemble(AT, None, user(consumed={3}), candidates([4, 2], [[]] * 2), items)
    assert column(x, "series_next_up") == [1.0, 0.0]
    x = assemble(AT, None, user(consumed=set()), candidates([2, 4], [[]] * 2), items)
    assert column(x, "series_next_up") == [0.0, 0.0]


def test_time_and_device():
    x = assemble(AT, " Mobile ", user(), CANDIDATES, catalog())
    assert_col(x, "hour_of_day", [13.75] * 5)
    assert_col(x, "day_of_week", [2] * 5)
    assert_col(x, "device", [2] * 5)
    sunday_night = datetime(2024, 5, 5, 23, 30, tzinfo=UTC)
    x = assemble(sunday_night, "fridge", user(), CANDIDATES, catalog())
    assert_col(x, "hour_of_day", [23.5] * 5)
    assert_col(x, "day_of_week", [6] * 5)
    assert_col(x, "device", [0] * 5)
    # the hour is the request's own local time
    local = AT.astimezone(timezone(timedelta(hours=2)))
    assert column(assemble(local, None, user(), CANDIDATES, catalog()), "hour_of_day")[0] == 15.75


def test_device_codes():
    assert np.isnan(device_code(None))
    assert [device_code(d) for d in DEVICES] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert device_code("TV") == 1.0 and device_code("smart fridge") == 0.0


def test_nan_where_the_user_has_no_vectors():
    cold = user(
        cf_vector=None,
        content_vector=None,
        recent_items=[],
        consumed=set(),
        n_events=0,
        active_days=0,
        genre_shares={},
    )
    x = assemble(AT, None, cold, CANDIDATES, catalog())
    for name in (
        "cf_dot",
        "content_sim",
        "recent_content_max",
        "recent_cf_max",
        "genre_affinity",
        "device",
    ):
        assert np.isnan(x[:, COL[name]]).all(), name
    assert_col(x, "series_next_up", [0] * 5)
    assert_col(x, "user_events_log", [0] * 5)
    # item features do not depend on the user
    warm = assemble(AT, None, user(), CANDIDATES, catalog())
    for name in ("popularity_log", "item_age_days", "rank_popular", "n_sources"):
        np.testing.assert_array_equal(x[:, COL[name]], warm[:, COL[name]])


hit_strategy = st.builds(
    SourceHit,
    source=st.sampled_from([*SOURCES, "unknown"]),
    rank=st.integers(1, 50),
    score=st.floats(-10, 10, width=32),
    anchor=st.none(),
)


@given(st.lists(st.lists(hit_strategy, max_size=6), min_size=1, max_size=6))
def test_rank_columns_hold_each_sources_best_hit(hits):
    items = list(range(len(hits)))
    x = assemble(AT, None, user(), candidates(items, hits), catalog())
    for row, mine in enumerate(hits):
        for source in SOURCES:
            of_source = [h for h in mine if h.source == source]
            rank, score = x[row, COL[f"rank_{source}"]], x[row, COL[f"score_{source}"]]
            if not of_source:
                assert np.isnan(rank) and np.isnan(score)
                continue
            best = min(of_source, key=lambda h: h.rank)  # the first of equal ranks
            assert rank == best.rank
            scored = [
                np.float32(min((h for h in hs if h.source == source), key=lambda h: h.rank).score)
                for hs in hits
                if any(h.source == source for h in hs)
            ]
            below = sum(s < np.float32(best.score) for s in scored)
            assert score == pytest.approx(below / max(1, len(scored) - 1))


@given(st.floats(0.01, 100), st.floats(-5, 5))
def test_model_scores_do_not_depend_on_the_models_scale(scale, shift):
    """A refitted model with the same order gives the ranker the same features."""
    base = catalog()
    rescaled = catalog()
    rescaled.cf = base.cf * np.float32(scale)
    rescaled.popularity = base.popularity * scale
    hits = [[SourceHit("cf_ann", i + 1, 0.9 - 0.1 * i)] for i in range(5)]
    moved = [[SourceHit("cf_ann", i + 1, scale * (0.9 - 0.1 * i) + shift)] for i in range(5)]
    a = assemble(AT, None, user(), candidates([2, 0, 5, 3, 1], hits), base)
    b = assemble(AT, None, user(), candidates([2, 0, 5, 3, 1], moved), rescaled)
    for name in ("cf_dot", "recent_cf_max", "popularity_log", "score_cf_ann"):
        np.testing.assert_allclose(a[:, COL[name]], b[:, COL[name]], err_msg=name)


def test_affinities_through_the_item_relations():
    from app.item_relations import DenseRelations, NeighbourRelations

    knn = NeighbourRelations(
        np.array([[2, 3], [0, -1], [-1, -1], [-1, -1], [-1, -1], [-1, -1]], np.int32),
        np.array([[0.5, 0.2], [0.9, 0], [0, 0], [0, 0], [0, 0], [0, 0]], np.float32),
    )
    weights = np.array([[0, 0.4, -0.3], [0.1, 0, 0.2], [0.3, 0.6, 0]], np.float32)
    ease = DenseRelations(np.array([0, 2, 5]), weights)
    state = user(history=np.array([0, 1]), history_weights=np.array([1.0, 2.0], np.float32))
    relations = {"item_knn": knn, "ease": ease, "ease_top": ease}
    x = assemble(AT, None, state, CANDIDATES, catalog(), relations)
    # candidates 2, 0, 5, 3, 1. knn raw: 2 -> 0.5, 0 -> 1.8, 5 -> 0, 3 -> 0.2, 1 -> 0
    assert_col(x, "item_knn_affinity", [0.75, 1, 0, 0.5, 0])
    # ease raw (history 0 with weight 1; 1 is not covered): 2 -> 0.4, 0 -> 0, 5 -> -0.3
    assert_col(x, "ease_affinity", [1, 0.25, 0, 0.25, 0.25])
    assert_col(x, "ease_top_affinity", [1, 0.25, 0, 0.25, 0.25])
    # no table, or no history: unknown
    assert np.isnan(assemble(AT, None, state, CANDIDATES, catalog())[:, COL["ease_affinity"]]).all()
    none = assemble(AT, None, user(), CANDIDATES, catalog(), relations)
    assert np.isnan(none[:, COL["item_knn_affinity"]]).all()


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-1, 3), st.one_of(st.none(), st.integers(0, 5))), min_size=1),
    st.data(),
)
def test_series_next_up_matches_a_loop_over_candidates(entries, data):
    """Vectorised: 1 exactly where the user consumed the entry just before the candidate's."""
    from app.features import _series_next_up

    class Items:
        series = np.array([s for s, _ in entries], dtype=np.int32)
        series_position = np.array([np.nan if p is None else p for _, p in entries], dtype=float)

        def __len__(self) -> int:
            return len(entries)

    n = len(entries)
    idx = np.asarray(data.draw(st.lists(st.integers(0, n - 1), max_size=10)), dtype=np.int64)
    consumed = set(data.draw(st.lists(st.integers(-1, n), max_size=8)))
    got = _series_next_up(user(consumed=consumed), idx, Items(), np.arange(len(idx)))
    watched = {entries[c] for c in consumed if 0 <= c < n and entries[c][0] >= 0}
    expected = [
        float(
            entries[i][0] >= 0
            and entries[i][1] is not None
            and (entries[i][0], entries[i][1] - 1) in watched
        )
        for i in idx.tolist()
    ]
    assert got.tolist() == expected


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.integers(0, 2**32 - 1), st.floats(0.0, 1.0))
def test_within_request_shares_by_their_definition(n: int, seed: int, missing: float) -> None:
    """Each relative column becomes the share of the column's known values strictly below the
    value (ties share the lowest), over n - 1; NaN stays NaN; other columns are untouched."""
    from app.features import _RELATIVE, _within_request

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURE_NAMES))).astype(np.float32)
    x[:, ::3] = np.round(x[:, ::3])  # ties
    x[rng.random(x.shape) < missing] = np.nan
    before = x.copy()
    out = _within_request(x)
    for col in range(len(FEATURE_NAMES)):
        values = before[:, col]
        if col not in _RELATIVE:
            np.testing.assert_array_equal(out[:, col], values)
            continue
        known = values[~np.isnan(values)]
        expected = [
            np.nan if np.isnan(v) else np.float32((known < v).sum() / max(1, len(known) - 1))
            for v in values
        ]
        np.testing.assert_array_equal(out[:, col], np.array(expected, dtype=np.float32))
