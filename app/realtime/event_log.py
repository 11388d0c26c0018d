"""The durable event log: the live `events` table, written by one task with group commit.

`append` hands a call's events to the writer task and waits. The writer takes every call that
is waiting, gives their events consecutive sequence numbers, writes them with one LanceDB append
(one fragment), fsyncs the new files when asked to, applies them to the real-time state and only
then answers each call: an acknowledged event is durable and already visible to the next request.
A failed write answers every call of its batch with an error and applies nothing.

With replicas (`app.realtime.feed`), the sequence numbers come from the shared feed, and every
durable batch is published to it before its calls are answered, so another replica honours an
acknowledged event in its next request.

Many small appends make many small fragments, so every `compact_every` appends the table is
compacted in the background (LanceDB optimize); versions older than a minute are removed after
the compacted files were synced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.deadlines import Fault, inject
from app.realtime.feed import Feed, LocalFeed
from app.realtime.live_store import (
    EVENTS,
    EVENTS_SCHEMA,
    LiveDatabase,
    LiveStoreError,
    TableSync,
)
from app.realtime.records import LiveEvent

log = logging.getLogger("shortlist.realtime")

MAX_BATCH_EVENTS = 20_000  # events per append, whatever is waiting
APPEND_FAULT = "events:append"  # test-only fault injection into the durable write
KEEP_VERSIONS_FOR = timedelta(minutes=1)
KEEP_EVERYTHING = timedelta(days=7)

Apply = Callable[[list[LiveEvent]], None]
Waiting = tuple[list[LiveEvent], "asyncio.Future[list[LiveEvent]]"]


class EventLog:
    def __init__(
        self,
        database: LiveDatabase,
        table: Any,
        next_seq: int,
        *,
        fsync: bool,
        compact_every: int,
        faults: Mapping[str, Fault] | None = None,
        feed: Feed | None = None,
    ) -> None:
        self.database = database
        self.feed: Feed = feed or LocalFeed()
        self.table = table
        self.next_seq = next_seq
        self.fsync = fsync
        self.compact_every = compact_every
        self.faults = dict(faults or {})
        self.lock = asyncio.Lock()  # held while a batch is written and applied
        self.on_durable: Apply = lambda events: None
        self.appends = 0
        self._sync = TableSync(database.table_dir(EVENTS)) if fsync else None
        self._pending: deque[Waiting] = deque()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._compaction: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(
        cls,
        database: LiveDatabase,
        *,
        fsync: bool,
        compact_every: int,
        faults: Mapping[str, Fault] | None = None,
        feed: Feed | None = None,
    ) -> EventLog:
        table = await database.table(EVENTS, EVENTS_SCHEMA)
        seqs = await table.query().select(["seq"]).to_arrow()
        top = pc.max(seqs["seq"]).as_py() if seqs.num_rows else None
        return cls(
            database,
            table,
            0 if top is None else int(top) + 1,
            fsync=fsync,
            compact_every=compact_every,
            faults=faults,
            feed=feed,
        )

    def start(self, on_durable: Apply) -> None:
        self.on_durable = on_durable
        self._writer = asyncio.create_task(self._run(), name="shortlist-event-writer")

    async def append(self, events: list[LiveEvent]) -> list[LiveEvent]:
        """Write the events durably and apply them; returns them with their sequence numbers."""
        if not events:
            return []
        if self._closed or self._writer is None:
            raise LiveStoreError("the event log is closed")
        done: asyncio.Future[list[LiveEvent]] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_observed)  # a caller that went away leaves no unseen error
        self._pending.append((events, done))
        self._wake.set()
        return await asyncio.shield(done)

    async def _run(self) -> None:
        while not self._closed or self._pending:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._commit(self._take())

    def _take(self) -> list[Waiting]:
        batch: list[Waiting] = []
        size = 0
        while self._pending and (not batch or size + len(self._pending[0][0]) <= MAX_BATCH_EVENTS):
            events, done = self._pending.popleft()
            batch.append((events, done))
            size += len(events)
        return batch

    async def _commit(self, batch: list[Waiting]) -> None:
        async with self.lock:
            try:
                first = await self.feed.allocate(sum(len(e) for e, _ in batch), self.next_seq)
            except Exception as exc:  # no numbers, nothing written
                log.error("no sequence numbers for an event append: %s", exc)
                for _, done in batch:
                    if not done.done():
                        done.set_exception(LiveStoreError(f"events were not stored: {exc}"))
                return
            self.next_seq = first
            numbered: list[list[LiveEvent]] = []
            for events, _ in batch:
                numbered.append([replace(e, seq=self.next_seq + n) for n, e in enumerate(events)])
                self.next_seq += len(events)
            flat = [e for events in numbered for e in events]
            try:
                await inject(APPEND_FAULT, self.faults)
                await self.table.add(to_arrow(flat))
            except Exception as exc:  # nothing of this batch is acknowledged
                log.error("event append failed: %s", exc)
                for _, done in batch:
                    if not done.done():
                        done.set_exception(LiveStoreError(f"events were not stored: {exc}"))
                return
            failure: Exception | None = None
            if self._sync is not None:
                try:
                    await self._sync()
                except OSError as exc:
                    failure = LiveStoreError(f"events were written but not synced: {exc}")
            try:
                self.on_durable(flat)  # in the log: the state must reflect them either way
            except Exception:
                log.exception("applying durable events to the real-time state failed")
            try:
                await self.feed.publish(flat)
            except Exception as exc:  # durable all the same: replicas see them on their replay
                log.error("events #%d.. are durable but not published to replicas: %s", first, exc)
            for (_, done), events in zip(batch, numbered, strict=True):
                if done.done():
                    continue
                if failure is not None:
                    done.set_exception(failure)
                else:
                    done.set_result(events)
        self.appends += 1
        if self.appends % self.compact_every == 0 and self._compaction is None:
            self._compaction = asyncio.create_task(self.compact(), name="shortlist-compaction")

    async def compact(self) -> None:
        """Merge small fragments; drop table versions older than a minute once that is durable."""
        try:
            started = time.perf_counter()
            stats = await self.table.optimize(cleanup_older_than=KEEP_EVERYTHING)
            if self._sync is not None:
                await self._sync()
            await self.table.optimize(cleanup_older_than=KEEP_VERSIONS_FOR)
            if self._sync is not None:
                await self._sync()
            log.info(
                "compacted the live events in %.0f ms: %s",
                (time.perf_counter() - started) * 1000,
                stats.compaction,
            )
        except Exception as exc:  # compaction is an optimisation: the log stays correct
            log.warning("compacting the live events failed: %s", exc)
        finally:
            self._compaction = None

    async def read_after(self, seq: int) -> list[LiveEvent]:
        """Every stored event with a sequence number above `seq`, in sequence order."""
        rows = await self.table.query().where(f"seq > {int(seq)}").to_arrow()
        return list(from_arrow(rows.sort_by("seq")))

    async def count(self) -> int:
        return int(await self.table.count_rows())

    async def close(self) -> None:
        """Write what is waiting, then stop."""
        self._closed = True
        self._wake.set()
        if self._writer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self._compaction is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._compaction


def _observed(done: asyncio.Future[list[LiveEvent]]) -> None:
    if not done.cancelled():
        done.exception()


def to_arrow(events: list[LiveEvent]) -> pa.Table:
    utc = pa.timestamp("ms", tz="UTC")
    return pa.Table.from_arrays(
        [
            pa.array([e.seq for e in events], pa.int64()),
            pa.array([e.user_id for e in events], pa.string()),
            pa.array([e.item_id for e in events], pa.string()),
            pa.array([e.event for e in events], pa.string()),
            pa.array([e.value for e in events], pa.float64()),
            pa.array([e.weight for e in events], pa.float32()),
            pa.array([e.at_ms for e in events], pa.int64()).cast(utc),
            pa.array([e.received_ms for e in events], pa.int64()).cast(utc),
            pa.array([e.device for e in events], pa.string()),
            pa.array([e.session_id for e in events], pa.string()),
        ],
        schema=EVENTS_SCHEMA,
    )


def from_arrow(rows: pa.Table) -> Iterator[LiveEvent]:
    ms = pa.int64()
    columns = {name: rows[name] for name in rows.column_names}
    at = pc.cast(columns["at"], ms).to_numpy(zero_copy_only=False)
    received = pc.cast(columns["received_at"], ms).to_numpy(zero_copy_only=False)
    values = columns["value"].to_pylist()
    weights = np.asarray(columns["weight"].to_numpy(zero_copy_only=False), dtype=np.float64)
    for n, (seq, user, item, event, device, session) in enumerate(
        zip(
            columns["seq"].to_pylist(),
            columns["user_id"].to_pylist(),
            columns["item_id"].to_pylist(),
            columns["event"].to_pylist(),
            columns["device"].to_pylist(),
            columns["session_id"].to_pylist(),
            strict=True,
        )
    ):
        yield LiveEvent(
            user_id=user,
            item_id=item,
            event=event,
            value=values[n],
            weight=float(weights[n]),
            at_ms=int(at[n]),
            received_ms=int(received[n]),
            device=device,
            session_id=session,
            seq=int(seq),
        )
