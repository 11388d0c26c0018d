"""The Redis event feed, against a real redis-server: what replicas share."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as redis

from app.caches import Caches
from app.realtime.feed import ItemsBusy, ItemsNotice, RedisFeed
from app.realtime.records import LiveEvent
from tests.e2e.serve import free_port


def _event(seq: int, user: str = "u1", item: str = "i1", event: str = "view") -> LiveEvent:
    return LiveEvent(
        user, item, event, None, 1.0, 1_700_000_000_000 + seq, 1_700_000_000_000, seq=seq
    )


@pytest.fixture
async def feeds(redis_server: str, redis_namespace: str) -> AsyncIterator[Callable[[], RedisFeed]]:
    opened: list[RedisFeed] = []

    def open_feed() -> RedisFeed:
        feed = RedisFeed.connect(redis_server, redis_namespace, max_batches=1000)
        opened.append(feed)
        return feed

    yield open_feed
    for feed in opened:
        await feed.close()


async def test_sequence_numbers_are_unique_across_replicas_and_above_the_log(feeds) -> None:
    a, b = feeds(), feeds()
    await a.floor(41)  # the durable log's highest number
    await b.floor(7)  # a replica that read an older log does not lower it
    firsts = [await a.allocate(3, 0), await b.allocate(2, 0), await a.allocate(1, 0)]
    assert firsts == [42, 45, 47]
    # a replica that knows of higher numbers than Redis (Redis lost its counter) skips past them
    assert await b.allocate(1, 100) == 100


async def test_a_published_batch_reaches_the_other_replicas_once_and_not_its_origin(feeds) -> None:
    a, b = feeds(), feeds()
    await a.mark()
    await b.mark()
    await a.publish([_event(1), _event(2, item="i2", event="dismiss")])
    await b.publish([_event(3, user="u2")])

    on_b = await b.poll()
    assert [e.seq for e in on_b.events] == [1, 2]
    assert on_b.events[1] == _event(2, item="i2", event="dismiss")  # every field round-trips
    assert (await b.poll()).events == [], "read once"
    assert [e.seq for e in (await a.poll()).events] == [3]


async def test_item_notices_reach_the_other_replicas_in_order_among_the_events(feeds) -> None:
    a, b = feeds(), feeds()
    await b.mark()
    await a.publish([_event(1)])
    await a.publish_items(ItemsNotice("v1", ["new-1", "new-2"]))
    await a.publish([_event(2)])
    await a.publish_items(ItemsNotice("v2", ["new-3"]))
    polled = await b.poll()
    assert [e.seq for e in polled.events] == [1, 2]
    assert polled.items == [ItemsNotice("v1", ["new-1", "new-2"]), ItemsNotice("v2", ["new-3"])]
    assert (await a.poll()).items == [], "a replica skips its own notices"


async def test_the_items_lock_lets_one_replica_write_at_a_time(feeds) -> None:
    a, b = feeds(), feeds()
    order: list[str] = []

    async def write(feed: RedisFeed, name: str) -> None:
        async with feed.items_lock():
            order.append(f"{name} in")
            await asyncio.sleep(0.2)
            order.append(f"{name} out")

    await asyncio.gather(write(a, "a"), write(b, "b"))
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])


async def test_mark_skips_what_a_replay_already_read(feeds) -> None:
    a, b = feeds(), feeds()
    await a.publish([_event(1)])  # durable before b replays: b's replay reads it from the log
    await b.mark()
    await a.publish([_event(2)])
    assert [e.seq for e in (await b.poll()).events] == [2]


async def test_the_pinned_version_is_shared(feeds) -> None:
    a, b = feeds(), feeds()
    assert await b.pinned() is None
    await a.pin("v1", only_if_unset=True)
    await b.pin("v0", only_if_unset=True)  # a second replica starting does not override it
    assert await b.pinned() == "v1"
    await b.pin("v2")  # reloadModels
    assert (await a.poll()).version == "v2"


async def test_a_replica_that_fell_behind_the_trimmed_feed_is_told(
    redis_server: str, redis_namespace: str
) -> None:
    a = RedisFeed.connect(redis_server, redis_namespace, max_batches=100)
    b = RedisFeed.connect(redis_server, redis_namespace, max_batches=100)
    try:
        await a.publish([_event(0)])
        await b.mark()
        assert not (await b.poll()).gap
        for seq in range(1, 400):
            await a.publish([_event(seq)])
        assert (await b.poll()).gap
    finally:
        await a.close()
        await b.close()


async def test_similar_items_are_cached_in_redis_as_json(
    redis_server: str, redis_namespace: str
) -> None:
    writer, reader = Caches(redis_server, redis_namespace), Caches(redis_server, redis_namespace)
    try:
        await writer.shared.set("similar:v1+0:i1:3", [[4, 1.0], [9, 0.5]], ttl=60)
        assert await reader.shared.get("similar:v1+0:i1:3") == [[4, 1.0], [9, 0.5]]
        assert await reader.shared.get("similar:v1+0:other:3") is None
        assert reader.shared.counts == {"hit": 1, "miss": 1}
        client = redis.from_url(redis_server, decode_responses=True)
        stored = await client.get(f"{redis_namespace}:cache:similar:v1+0:i1:3")
        await client.aclose()
        assert stored == "[[4, 1.0], [9, 0.5]]"
    finally:
        await writer.close()
        await reader.close()


async def test_in_process_caches_run_without_a_timeout_and_redis_keeps_its_own(
    redis_server: str, redis_namespace: str
) -> None:
    # aiocache wraps every call of a cache with a timeout in a task of its own: a dict lookup
    # cannot hang, so the in-process caches go without; a Redis call can, so it keeps aiocache's
    alone, shared = Caches(), Caches(redis_server, redis_namespace)
    try:
        assert alone.local.backend.timeout is None and alone.shared.backend.timeout is None
        assert shared.local.backend.timeout is None
        assert shared.shared.backend.timeout and shared.shared.backend.timeout > 0
        await alone.local.set("user:v1:u1", {"state": 1}, ttl=60)
        assert await alone.local.get("user:v1:u1") == {"state": 1}
        assert alone.local.counts == {"hit": 1}
    finally:
        await alone.close()
        await shared.close()


async def test_without_redis_the_items_lock_refuses_with_a_clear_error() -> None:
    feed = RedisFeed.connect(f"redis://127.0.0.1:{free_port()}/0", "nowhere", max_batches=10)
    try:
        with pytest.raises(ItemsBusy, match="Redis is unreachable") as refused:
            async with feed.items_lock():
                raise AssertionError("never reached")
        assert refused.value.code == "LIVE_STORE_UNAVAILABLE"
    finally:
        await feed.close()
