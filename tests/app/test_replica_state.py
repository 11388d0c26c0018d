"""Live state of two replicas on one live database and one real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from app.realtime.live import Live
from app.realtime.records import LiveEvent
from app.settings import Settings

AT_MS = 1_700_000_000_000


def event(user: str, item: str, kind: str = "view", weight: float = 1.0) -> LiveEvent:
    return LiveEvent(user, item, kind, None, weight, AT_MS, AT_MS)


@pytest.fixture
async def replica(
    tmp_path: Path, redis_server: str, redis_namespace: str
) -> AsyncIterator[Callable[[], Live]]:
    settings = Settings(
        db_path=tmp_path / "shortlist.lancedb",
        redis_url=redis_server,
        redis_namespace=redis_namespace,
        events_fsync=False,
    )
    opened: list[Live] = []

    async def open_replica() -> Live:
        live = await Live.open(settings)
        await live.replay(-1)
        opened.append(live)
        return live

    yield open_replica  # type: ignore[misc]
    for live in opened:
        await live.close()


async def test_events_stored_by_one_replica_reach_the_other_before_its_next_read(replica) -> None:
    a, b = await replica(), await replica()
    await a.events.append([event("u1", "i1"), event("u2", "i1"), event("u1", "i2", "dismiss", 0.0)])
    assert b.users.get("u1") is None, "not before it catches up"
    assert (await b.catch_up()).version is None  # no version pinned by a bare Live
    u1 = b.users.get("u1")
    assert u1 is not None and (u1.consumed, u1.dismissed) == ({"i1"}, {"i2"})
    now = AT_MS / 1000
    assert b.trending.score("i1", now) == pytest.approx(2.0)
    assert b.trending.score("i1", now) == a.trending.score("i1", now)

    await b.events.append([event("u3", "i1")])  # and back, numbered after A's events
    await a.catch_up()
    assert a.trending.score("i1", now) == pytest.approx(3.0)
    stored = [e.seq for e in await a.events.read_after(-1)]
    assert sorted(stored) == [0, 1, 2, 3], "one numbering across replicas"
    assert a.users.events == b.users.events == 4


async def test_a_replay_racing_the_feed_counts_every_event_once(replica) -> None:
    a = await replica()
    await a.events.append([event("u1", "i1"), event("u2", "i1")])
    c = await replica()
    marked = c.feed.mark

    async def mark_then_a_stores_more() -> None:
        # after C's mark, before C reads the log: this event is both in C's replay and, later
        # than the mark, in the feed
        await marked()
        await a.events.append([event("u3", "i1")])

    c.feed.mark = mark_then_a_stores_more  # type: ignore[method-assign]
    await c.replay(-1)
    await c.catch_up()
    now = AT_MS / 1000
    assert c.trending.score("i1", now) == pytest.approx(3.0)
    assert c.trending.score("i1", now) == a.trending.score("i1", now)
    u3 = c.users.get("u3")
    assert u3 is not None and u3.n_events == 1
    assert c.users.events == 3

    await a.events.append([event("u4", "i1")])  # and the feed goes on after the replay
    await c.catch_up()
    assert c.trending.score("i1", now) == pytest.approx(4.0)


async def test_catch_ups_made_during_a_read_share_the_next_and_see_what_came_before(
    replica,
) -> None:
    a, b = await replica(), await replica()
    real_poll = b.feed.poll
    reads = 0
    reading = asyncio.Event()
    release = asyncio.Event()

    async def counted_poll():  # type: ignore[no-untyped-def]
        nonlocal reads
        reads += 1
        if reads == 1:  # the first read is slow: calls pile up behind it
            reading.set()
            await release.wait()
        return await real_poll()

    b.feed.poll = counted_poll  # type: ignore[method-assign]
    first = asyncio.create_task(b.catch_up())
    await reading.wait()
    # acknowledged on A after B's first read started: that read may miss it, the calls made
    # after it must not
    await a.events.append([event("u1", "i1")])
    later = [asyncio.create_task(b.catch_up()) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *later)
    assert reads == 2, "the five calls made during the first read shared one read after it"
    u1 = b.users.get("u1")
    assert u1 is not None and u1.consumed == {"i1"}
    assert b.users.events == 1, "applied once"

    await a.events.append([event("u2", "i1")])
    await b.catch_up()  # alone: a read of its own
    assert reads == 3 and b.users.get("u2") is not None
