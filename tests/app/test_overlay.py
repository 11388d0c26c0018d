"""The live overlay: what a user did since the build, laid over their batch state."""

from __future__ import annotations

import copy

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain import UserState
from app.items import ItemCatalog
from app.realtime.overlay import LiveUser, LiveUsers, overlay
from app.realtime.records import LiveEvent
from tests.app.test_catalog_growth import item_rows

CATALOG = ItemCatalog.from_arrow(item_rows(list(range(12))))
WEIGHTS = {"view": 1.0, "click": 1.5, "purchase": 3.0, "dismiss": 0.0, "rating": 0.6}


def event(item: int, kind: str = "view", user: str = "u") -> LiveEvent:
    return LiveEvent(user, f"i{item}", kind, None, WEIGHTS[kind], 86_400_000 * 20_000, 0)


def batch_state(known: bool = True) -> UserState:
    if not known:
        return UserState("u", False, None, None, [], set(), set())
    return UserState(
        user_id="u",
        known=True,
        cf_vector=np.ones(3, dtype=np.float32),
        content_vector=CATALOG.content[0],
        recent_items=[0, 1, 2],
        consumed={0, 1, 2},
        dismissed={5},
        n_events=7,
        active_days=2,
        genre_shares={"drama": 1.0},
        history=np.array([1, 0], dtype=np.int64),
        history_weights=np.array([2.0, 1.0], dtype=np.float32),
    )


def test_recent_items_newest_first_without_dismissals_or_repeats() -> None:
    user = LiveUser()
    for e in (event(3), event(4), event(3), event(6, "dismiss"), event(7, "click")):
        user.apply(e, keep_recent=3)
    assert user.recent == ["i7", "i3", "i4"]
    assert user.consumed == {"i3", "i4", "i7"} and user.dismissed == {"i6"}
    assert user.endorsements == {"i3": 2.0, "i4": 1.0, "i7": 1.5}
    assert user.n_events == 5 and user.revision == 5


def test_a_later_endorsement_takes_an_item_off_the_dismissed_list() -> None:
    live = LiveUser()
    live.apply(event(8, "dismiss"), 10)
    live.apply(event(5, "view"), 10)  # 5 was dismissed in the batch
    live.apply(event(9, "dismiss"), 10)
    live.apply(event(9, "rating"), 10)  # a weak rating is no endorsement: stays dismissed
    state = overlay(batch_state(), live, CATALOG, 50, None, None)
    assert state.dismissed == {8, 9}
    assert state.recent_items[:2] == [9, 5]
    assert state.consumed == {0, 1, 2, 5, 9}
    assert state.n_events == 11


def test_a_new_user_is_known_from_the_first_event() -> None:
    live = LiveUser()
    live.apply(event(4), 10)
    cf = np.array([0.5, 0.1, 0.0], dtype=np.float32)
    state = overlay(batch_state(known=False), live, CATALOG, 50, cf, None)
    assert state.known and state.recent_items == [4] and state.consumed == {4}
    assert state.cf_vector is cf
    assert np.allclose(state.content_vector, CATALOG.content[4])
    assert set(state.genre_shares) == set(CATALOG.genres[4])


def test_live_users_apply_and_clear() -> None:
    users = LiveUsers(keep_recent=5)
    users.apply(event(1, user="a"))
    users.apply(event(2, user="b"))
    assert len(users) == 2 and users.events == 2 and users.get("a") is not None
    users.clear()
    assert len(users) == 0 and users.get("a") is None


kinds = st.sampled_from(list(WEIGHTS))


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(st.tuples(st.integers(0, 13), kinds), max_size=30),
    known=st.booleans(),
    keep=st.integers(1, 8),
)
def test_overlay_invariants(events, known, keep) -> None:
    batch = batch_state(known)
    before = copy.deepcopy(batch)
    live = LiveUser()
    for item, kind in events:
        live.apply(event(item, kind), keep)
    state = overlay(batch, live, CATALOG, keep, None, None)
    assert state is not batch
    assert batch.__dict__.keys() == before.__dict__.keys()
    for name in ("recent_items", "consumed", "dismissed", "n_events", "genre_shares"):
        assert getattr(batch, name) == getattr(before, name), "the cached batch state is shared"
    assert len(state.recent_items) == len(set(state.recent_items)) <= keep
    assert all(0 <= i < len(CATALOG) for i in state.recent_items)
    assert batch.consumed <= state.consumed
    consumed_live = {int(i[1:]) for i in live.consumed if int(i[1:]) < len(CATALOG)}
    assert consumed_live <= state.consumed
    last = {}
    for item, kind in events:
        last[item] = kind
    for item, kind in last.items():
        if kind == "dismiss" and item < len(CATALOG):
            assert item in state.dismissed, "the latest word on an item was a dismissal"
    assert state.n_events == batch.n_events + len(events)
    # the endorsed history: live endorsements first, then the batch's, each item once
    history = state.history.tolist()
    assert len(set(history)) == len(history) and (state.history_weights > 0).all()
    endorsed = {
        int(i[1:]): w for i, w in live.endorsements.items() if w > 0 and int(i[1:]) < len(CATALOG)
    }
    assert set(history) == set(endorsed) | set(batch.history.tolist())
    assert set(history[: len(endorsed)]) == set(endorsed)
    batch_weight = dict(zip(batch.history.tolist(), batch.history_weights.tolist(), strict=True))
    for item, weight in zip(history, state.history_weights.tolist(), strict=True):
        expected = endorsed.get(item, 0.0) + batch_weight.get(item, 0.0)
        assert abs(weight - expected) < 1e-5
