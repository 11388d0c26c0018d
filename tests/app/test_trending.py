"""Trending: decayed distinct-user counts that a burst from a few accounts cannot inflate."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from app.realtime.intake import EventIntake, IntakeRules
from app.realtime.records import EventDraft
from app.realtime.trending import Trending

HOUR = 3600.0
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


class _Catalog:
    """Just enough of an ItemCatalog for intake: which ids exist."""

    def __init__(self, ids: list[str]) -> None:
        self.index = pd.Index(ids)

    def indices_of(self, ids: list[str]) -> np.ndarray:
        return np.asarray(self.index.get_indexer(pd.Index(ids)), dtype=np.int64)


async def _ingest(trending: Trending, intake: EventIntake, drafts: list[EventDraft]) -> int:
    """Pass drafts through intake (rate limit included) into trending, as the server does."""
    accepted, _ = await intake.check(drafts, _Catalog(["bot-target", "real-hit"]), 5.0, NOW)  # type: ignore[arg-type]
    for event in accepted:
        if event.weight >= 1.0:
            trending.add(event.user_id, event.item_id, event.at_ms / 1000)
    return len(accepted)


async def test_ten_thousand_events_from_five_bots_move_less_than_twenty_users() -> None:
    trending = Trending(half_life_s=6 * HOUR)
    intake = EventIntake(IntakeRules(rate_per_user=10.0, burst_per_user=300))
    bots = [EventDraft(f"bot{n % 5}", "bot-target", "purchase", at=NOW) for n in range(10_000)]
    accepted_bots = await _ingest(trending, intake, bots)
    people = [EventDraft(f"person{n}", "real-hit", "view", at=NOW) for n in range(20)]
    assert await _ingest(trending, intake, people) == 20

    now = NOW.timestamp()
    assert accepted_bots <= 5 * 300, "the rate limit stops most of the burst"
    assert trending.score("bot-target", now) <= 5.0 + 1e-9
    assert trending.score("real-hit", now) >= 4 * trending.score("bot-target", now)
    assert [item for item, _ in trending.top(2)] == ["real-hit", "bot-target"]


def test_a_burst_without_rate_limit_still_counts_each_user_once() -> None:
    trending = Trending(half_life_s=HOUR)
    for n in range(10_000):
        trending.add(f"bot{n % 5}", "item", 1000.0 + n * 0.01)
    assert trending.score("item", 1100.0) <= 5.0 + 1e-9


def test_counts_decay_by_half_life_and_refresh_on_repeat() -> None:
    trending = Trending(half_life_s=HOUR)
    trending.add("u1", "a", 0.0)
    trending.add("u2", "a", 0.0)
    assert np.isclose(trending.score("a", 0.0), 2.0)
    assert np.isclose(trending.score("a", HOUR), 1.0)
    trending.add("u1", "a", HOUR)  # u1 again: refreshed to 1, not added
    assert np.isclose(trending.score("a", HOUR), 1.5)
    assert trending.score("missing", HOUR) == 0.0


def test_old_contributions_are_forgotten() -> None:
    trending = Trending(half_life_s=HOUR, forget_after=4)
    trending.add("u1", "old", 0.0)
    trending.add("u2", "new", 10 * HOUR)
    trending.forget(10 * HOUR)
    assert len(trending) == 1 and trending.score("old", 10 * HOUR) == 0.0


def test_long_runs_rebase_without_overflow() -> None:
    trending = Trending(half_life_s=60.0)
    for day in range(400):
        trending.add(f"u{day}", "item", day * 86_400.0)
    assert 0.99 <= trending.score("item", 399 * 86_400.0) <= 1.01


events = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u3", "u4"]),
        st.sampled_from(["a", "b", "c"]),
        st.floats(min_value=0, max_value=50 * HOUR, allow_nan=False),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(events=events, seed=st.integers(0, 1000))
def test_scores_ignore_arrival_order_and_stay_within_distinct_users(events, seed) -> None:
    first, second = Trending(half_life_s=HOUR), Trending(half_life_s=HOUR)
    for user, item, at in events:
        first.add(user, item, at)
    shuffled = list(events)
    np.random.default_rng(seed).shuffle(shuffled)
    for user, item, at in shuffled:
        second.add(user, item, at)
    now = 60 * HOUR
    for item in "abc":
        users = {u for u, i, _ in events if i == item}
        score = first.score(item, now)
        assert 0.0 <= score <= len(users) + 1e-9
        assert np.isclose(score, second.score(item, now), rtol=1e-9, atol=1e-12)
