"""How replicas share the real-time state: one event feed, and one pinned serving version.

Every replica keeps its own live state (overlays, trending) in memory, built the same way from
the same events; what they share is the order of those events. The durable LanceDB log (shared
catalog directory) stays the source of truth; the feed is how a replica learns, before its next
request, about the events another replica acknowledged.

    LocalFeed   one process (SHORTLIST_REDIS_URL unset): sequence numbers from the log, nothing
                to learn from anyone, no pinned version
    RedisFeed   replicas on one Redis: sequence numbers from INCRBY (unique across replicas), a
                Redis stream of acknowledged batches (each replica skips its own), and the
                serving version pinned under one key

Items upserted on one replica travel the same stream as notices (the version and the item ids
written into its items table); a replica that reads one grows its in-memory catalog from the
table's rows. Writes to a version's items table take the feed's items lock (a Redis lock with an
expiry), so two replicas never give two new items the same item_index.

A replica applies a feed batch once: its own batches are skipped by origin, and after a replay
(start-up, version switch) the feed resumes from the stream's end as it was *before* the log was
read, skipping the sequence numbers the replay already applied. Events reach the feed only after
they are durable, so every event is either in the replay or still ahead in the stream: nothing is
lost and nothing (trending counts included) is applied twice.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as redis
from redis.exceptions import LockError

from app.realtime.live_store import LiveStoreError
from app.realtime.records import LiveEvent

log = logging.getLogger("shortlist.realtime")

READ_BATCHES = 1000  # stream entries per XREAD
ITEMS_LOCK_HOLD_S = 120.0  # a replica that dies holding the items lock frees it after this
ITEMS_LOCK_WAIT_S = 60.0  # how long an upsert waits for another replica's to finish
# The counter holds the last sequence number given out. _FLOOR raises it to at least ARGV[1];
# _ALLOCATE gives out ARGV[1] numbers, none at or below ARGV[2] (the last this replica knows of:
# guards against a Redis that lost the counter while the replicas ran).
_RAISE = (
    "local now = redis.call('GET', KEYS[1]) "
    "if not now or tonumber(ARGV[2]) > tonumber(now) then redis.call('SET', KEYS[1], ARGV[2]) end "
)
_FLOOR = _RAISE
_ALLOCATE = _RAISE + "return redis.call('INCRBY', KEYS[1], ARGV[1])"


@dataclass
class Polled:
    events: list[LiveEvent] = field(default_factory=list)  # from other replicas, in feed order
    version: str | None = None  # the pinned serving version (None: none pinned)
    gap: bool = False  # entries this replica never read were trimmed: rebuild from the log
    items: list[ItemsNotice] = field(default_factory=list)  # other replicas' upserts, in order


@dataclass(frozen=True)
class ItemsNotice:
    version: str  # the catalog version whose items table was written
    item_ids: list[str]  # inserted or changed there


class ItemsBusy(LiveStoreError):
    """The items lock could not be taken (another replica held it too long, or Redis is
    unreachable): nothing was written; or the other replicas could not be told of a write."""


class Feed(Protocol):
    async def floor(self, top_seq: int) -> None:
        """Number new events above `top_seq`, the durable log's highest."""

    async def allocate(self, count: int, local_next: int) -> int:
        """The first of `count` consecutive new sequence numbers."""

    async def publish(self, events: list[LiveEvent]) -> None:
        """Tell the other replicas about durable events."""

    async def publish_items(self, notice: ItemsNotice) -> None:
        """Tell the other replicas that items were written into a version's items table."""

    def items_lock(self) -> Any:
        """An async context manager held while a replica writes a version's items table."""

    async def mark(self) -> None:
        """Resume reading at the feed's current end (called before the log is replayed)."""

    async def poll(self) -> Polled: ...

    async def pin(self, version: str, only_if_unset: bool = False) -> None:
        """Pin the version every replica serves."""

    async def pinned(self) -> str | None: ...

    async def close(self) -> None: ...


class LocalFeed:
    async def floor(self, top_seq: int) -> None:
        return None

    async def allocate(self, count: int, local_next: int) -> int:
        return local_next

    async def publish(self, events: list[LiveEvent]) -> None:
        return None

    async def publish_items(self, notice: ItemsNotice) -> None:
        return None

    @asynccontextmanager
    async def items_lock(self) -> AsyncIterator[None]:
        yield  # one process: the engine's own lock is enough

    async def mark(self) -> None:
        return None

    async def poll(self) -> Polled:
        return Polled()

    async def pin(self, version: str, only_if_unset: bool = False) -> None:
        return None

    async def pinned(self) -> str | None:
        return None

    async def close(self) -> None:
        return None


class RedisFeed:
    def __init__(self, client: Any, namespace: str, max_batches: int) -> None:
        self.client = client
        self.stream = f"{namespace}:events"
        self.seq_key = f"{namespace}:seq"
        self.version_key = f"{namespace}:version"
        self.items_lock_key = f"{namespace}:items-lock"
        self.max_batches = max_batches
        self.origin = uuid.uuid4().hex  # this replica, for the lifetime of the process
        self.cursor = "0-0"  # last stream entry read

    @classmethod
    def connect(cls, url: str, namespace: str, max_batches: int) -> RedisFeed:
        client = redis.from_url(url, decode_responses=True)
        return cls(client, namespace, max_batches)

    async def floor(self, top_seq: int) -> None:
        await self.client.eval(_FLOOR, 1, self.seq_key, 0, top_seq)

    async def allocate(self, count: int, local_next: int) -> int:
        last = int(await self.client.eval(_ALLOCATE, 1, self.seq_key, count, local_next - 1))
        return last - count + 1

    async def publish(self, events: list[LiveEvent]) -> None:
        if not events:
            return
        body = json.dumps([dataclasses.astuple(e) for e in events])
        await self.client.xadd(
            self.stream,
            {"origin": self.origin, "events": body},
            maxlen=self.max_batches,
            approximate=True,
        )

    async def publish_items(self, notice: ItemsNotice) -> None:
        body = json.dumps({"version": notice.version, "item_ids": notice.item_ids})
        try:
            await self.client.xadd(
                self.stream,
                {"origin": self.origin, "items": body},
                maxlen=self.max_batches,
                approximate=True,
            )
        except (redis.RedisError, OSError) as exc:
            raise ItemsBusy(
                "the items were stored and this replica serves them, but the other replicas "
                f"could not be told (Redis: {exc}); they take them in at their next version "
                "switch or restart"
            ) from exc

    @asynccontextmanager
    async def items_lock(self) -> AsyncIterator[None]:
        lock = self.client.lock(
            self.items_lock_key, timeout=ITEMS_LOCK_HOLD_S, blocking_timeout=ITEMS_LOCK_WAIT_S
        )
        try:
            acquired = await lock.acquire()
        except (redis.RedisError, OSError) as exc:
            raise ItemsBusy(f"items were not stored: Redis is unreachable ({exc})") from exc
        if not acquired:
            raise ItemsBusy(
                f"another replica has been writing items for over {ITEMS_LOCK_WAIT_S:g} s "
                f"(Redis lock {self.items_lock_key}); nothing was written, try again"
            )
        try:
            yield
        finally:
            try:
                await lock.release()
            except LockError:  # held past its expiry: another replica may have taken it since
                log.warning("the items lock expired before this replica released it")
            except (redis.RedisError, OSError) as exc:  # it expires on its own
                log.warning("could not release the items lock: %s", exc)

    async def mark(self) -> None:
        newest = await self.client.xrevrange(self.stream, count=1)
        self.cursor = newest[0][0] if newest else "0-0"

    async def poll(self) -> Polled:
        polled = Polled()
        first = True
        while True:
            pipe = self.client.pipeline(transaction=False)
            pipe.xread({self.stream: self.cursor}, count=READ_BATCHES)
            if first:
                pipe.get(self.version_key)
                pipe.xrange(self.stream, count=1)
            answers = await pipe.execute()
            entries = answers[0][0][1] if answers[0] else []
            if first:
                polled.version = answers[1]
                oldest = answers[2][0][0] if answers[2] else None
                polled.gap = (
                    self.cursor != "0-0" and oldest is not None and (_id(oldest) > _id(self.cursor))
                )
                first = False
            for entry_id, fields in entries:
                self.cursor = entry_id
                if fields.get("origin") == self.origin:
                    continue
                if "items" in fields:
                    notice = json.loads(fields["items"])
                    polled.items.append(ItemsNotice(notice["version"], notice["item_ids"]))
                else:
                    polled.events += [LiveEvent(*row) for row in json.loads(fields["events"])]
            if len(entries) < READ_BATCHES:
                return polled

    async def pin(self, version: str, only_if_unset: bool = False) -> None:
        await self.client.set(self.version_key, version, nx=only_if_unset)

    async def pinned(self) -> str | None:
        value = await self.client.get(self.version_key)
        return str(value) if value is not None else None

    async def close(self) -> None:
        await self.client.aclose()


def _id(entry: str) -> tuple[int, int]:
    millis, _, n = entry.partition("-")
    return int(millis), int(n or 0)
