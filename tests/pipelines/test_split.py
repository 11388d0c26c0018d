from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.split import temporal_split


def frame(users: list[str], times: list[int], index: list[int] | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {"user_id": users, "item_id": [f"i{n}" for n in range(len(users))], "timestamp": times},
        index=index,
    )


def test_known_split():
    events = frame(
        ["u"] * 10 + ["short"] * 4 + ["v"] * 5,
        [*(5, 1, 9, 3, 7, 2, 8, 4, 6, 10), *(1, 2, 3, 4), *(1, 2, 3, 3, 3)],
    )
    keep = temporal_split(events, holdout=0.2, min_events=5)
    held = events.loc[~keep]
    # u: the two latest (t=9, 10); short: fewer than 5 events, all kept;
    # v: floor(5 * 0.2) = 1 held out, but the last second holds three events: all go.
    assert sorted(held.loc[held["user_id"] == "u", "timestamp"]) == [9, 10]
    assert not (held["user_id"] == "short").any()
    assert sorted(held.loc[held["user_id"] == "v", "timestamp"]) == [3, 3, 3]
    assert keep.dtype == bool and len(keep) == len(events)


def test_mask_follows_row_order_not_index_labels():
    events = frame(["a"] * 5, [50, 40, 30, 20, 10], index=[4, 3, 2, 1, 0])
    keep = temporal_split(events, holdout=0.2, min_events=5)
    assert keep.tolist() == [False, True, True, True, True]


def test_at_least_one_held_out():
    events = frame(["a"] * 6, list(range(6)))
    keep = temporal_split(events, holdout=0.01, min_events=2)
    assert keep.tolist() == [True] * 5 + [False]


events_strategy = st.lists(
    st.tuples(st.sampled_from(["ann", "bob", "cy", "dee", "eve"]), st.integers(0, 12)),
    min_size=0,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(events_strategy, st.floats(0.0, 0.9), st.integers(1, 8))
def test_split_properties(rows, holdout, min_events):
    events = frame([u for u, _ in rows], [t for _, t in rows])
    keep = temporal_split(events, holdout=holdout, min_events=min_events)
    assert len(keep) == len(events)
    for user, mine in events.groupby("user_id"):
        kept = mine["timestamp"].to_numpy()[keep[events["user_id"].to_numpy() == user]]
        held = mine["timestamp"].to_numpy()[~keep[events["user_id"].to_numpy() == user]]
        n = len(mine)
        if n < min_events:
            assert len(held) == 0
            continue
        want = max(1, math.floor(n * holdout))
        # no held-out event earlier than (or tied with) any kept event of the same user
        if len(kept) and len(held):
            assert held.min() > kept.max()
        # exactly the events at or after the time of the last `want` events: the share, plus
        # whatever shares the cut's second
        cut = np.sort(mine["timestamp"].to_numpy())[n - want]
        assert len(held) == int((mine["timestamp"] >= cut).sum())
        assert len(held) >= want
        if not (mine["timestamp"] == cut).sum() > 1:
            assert len(held) == want


@settings(max_examples=50, deadline=None)
@given(events_strategy, st.randoms(use_true_random=False))
def test_split_ignores_row_order(rows, rnd):
    events = frame([u for u, _ in rows], [t for _, t in rows])
    keep = temporal_split(events, holdout=0.3, min_events=3)
    order = list(range(len(events)))
    rnd.shuffle(order)
    shuffled = events.iloc[order]
    keep_shuffled = temporal_split(shuffled, holdout=0.3, min_events=3)
    # The same events held out, whatever the file order (ties are cut as a block).
    assert sorted(shuffled["item_id"][~keep_shuffled]) == sorted(events["item_id"][~keep])
