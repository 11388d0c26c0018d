"""The real-time side of the engine: event intake, the durable log, and the live state it feeds.

`Live` owns the live database (`<db_path>/live/`), the per-user overlay and trending counters.
Every durable event is applied to both, in sequence order, before its call is acknowledged.
On start-up and on every version switch the live state is rebuilt from the log: every event
newer than the version's training watermark (`Manifest.live_watermark`) is replayed, so a
version trained on some live events never counts them twice, and a killed server loses nothing
it acknowledged.

With replicas, the events other replicas acknowledged arrive through the feed
(`app.realtime.feed`): `catch_up` applies them before a request reads the state.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import numpy as np

from app.domain import UserState
from app.items import ItemCatalog
from app.rate_limits import shared_buckets
from app.realtime.event_log import EventLog
from app.realtime.feed import Feed, LocalFeed, Polled, RedisFeed
from app.realtime.fold_in import FoldIn, History
from app.realtime.intake import EventIntake, IntakeRules
from app.realtime.item_upserts import ItemUpserts
from app.realtime.live_store import LiveDatabase
from app.realtime.overlay import LiveUser, LiveUsers, overlay
from app.realtime.records import EventDraft, LiveEvent, RecordedEvents
from app.realtime.trending import Trending
from app.settings import Settings
from app.store import CatalogRoot, Manifest

log = logging.getLogger("shortlist.realtime")


class Live:
    def __init__(
        self,
        settings: Settings,
        database: LiveDatabase,
        events: EventLog,
        items: ItemUpserts,
    ) -> None:
        self.settings = settings
        self.database = database
        self.events = events  # the durable event log
        self.items = items
        self.intake = EventIntake(
            IntakeRules(
                max_future_s=settings.event_max_future_s,
                rate_per_user=settings.event_rate_per_user,
                burst_per_user=settings.event_burst_per_user,
            ),
            shared_buckets(settings),
        )
        self.users = LiveUsers(settings.recent_items)
        self.trending = Trending(settings.trending_half_life_hours * 3600.0)
        self.watermark = -1  # live events up to here are in the serving version's training
        self.ingested: Counter[str] = Counter()  # events this process stored, by type
        self._replayed: set[int] = set()  # applied by the last replay: skipped in the feed
        self._catching_up = asyncio.Lock()  # one feed read (or replay) at a time
        self._asked = 0  # catch_up calls made so far
        self._covered = 0  # the calls made before the last complete feed read started

    @property
    def feed(self) -> Feed:
        return self.events.feed

    @classmethod
    async def open(cls, settings: Settings) -> Live:
        shared = settings.redis_url is not None
        feed: Feed = (
            RedisFeed.connect(
                settings.redis_url, settings.redis_namespace, settings.redis_feed_max_batches
            )
            if settings.redis_url is not None
            else LocalFeed()
        )
        database = await LiveDatabase.open(CatalogRoot(settings.db_path).live_dir, shared)
        try:
            event_log = await EventLog.open(
                database,
                fsync=settings.events_fsync,
                compact_every=settings.events_compact_every,
                faults=settings.faults,
                feed=feed,
            )
            await feed.floor(event_log.next_seq - 1)
        except BaseException:
            await feed.close()
            raise
        items = ItemUpserts(
            database, settings.text_model, settings.threads, settings.embed_batch_size
        )
        live = cls(settings, database, event_log, items)
        event_log.start(live.apply)
        return live

    async def close(self) -> None:
        await self.events.close()
        await self.feed.close()
        await self.intake.buckets.close()

    # --- events ---------------------------------------------------------------------------------
    async def record(
        self, drafts: list[EventDraft], catalog: ItemCatalog, manifest: Manifest
    ) -> RecordedEvents:
        """Check, store durably and apply a call's events; returns once they are durable."""
        scale = rating_scale(manifest, catalog)
        accepted, rejected = await self.intake.check(drafts, catalog, scale)
        written = await self.events.append(accepted)
        self.ingested.update(e.event for e in written)
        return RecordedEvents(len(written), rejected, written[-1].seq if written else None)

    def apply(self, events: list[LiveEvent]) -> None:
        """Apply durable events, in sequence order, to the overlay and the trending counters."""
        for event in events:
            self.users.apply(event)
            if event.weight >= 1.0:
                moment = min(event.at_ms, event.received_ms) / 1000.0
                self.trending.add(event.user_id, event.item_id, moment)

    async def replay(self, watermark: int) -> int:
        """Rebuild the live state from every logged event after `watermark`.

        Holds the log's lock, so no event is written meanwhile: the state ends exactly at the
        log's end. Call it with the lock not held.
        """
        async with self.events.lock, self._catching_up:
            await self.feed.mark()  # before the read: what the feed holds beyond is not in it
            logged = await self.events.read_after(watermark)
            self.users.clear()
            self.trending.clear()
            self.apply(logged)
            self.watermark = watermark
            self._replayed = {e.seq for e in logged}
        if logged:
            log.info("replayed %d live events after #%d", len(logged), watermark)
        return len(logged)

    async def catch_up(self) -> Polled:
        """Apply the events other replicas acknowledged before this call; returns what was
        polled (the pinned serving version, other replicas' item notices, whether the feed had
        a gap: the live state was then rebuilt from the log, and items may have been missed).

        Calls made while a feed read is under way share the next one: it starts after all of
        them were made, so it holds every event acknowledged before each. Under load that is one
        Redis round trip for several requests instead of one each. The call whose read it was
        gets what was polled, to act on; the others get an empty `Polled`."""
        self._asked += 1
        asked = self._asked
        async with self._catching_up:
            if self._covered >= asked:
                return Polled()
            covering = self._asked
            polled: Polled = await self.feed.poll()
            if not polled.gap:
                fresh = [
                    e
                    for e in polled.events
                    if e.seq > self.watermark and e.seq not in self._replayed
                ]
                self.apply(fresh)
                self._covered = covering
        if polled.gap:
            log.warning("the event feed was trimmed past this replica: rebuilding from the log")
            await self.replay(self.watermark)
        return polled

    # --- user state -----------------------------------------------------------------------------
    async def user_state(
        self, batch: UserState, catalog: ItemCatalog, key: str, version: str, fold: FoldIn | None
    ) -> UserState:
        """The batch state with the user's live events laid over it (the batch one if none).

        Raises when the user's batch history cannot be read (the caller falls back on
        `user_state_now`, which leaves it out)."""
        live = self.users.get(batch.user_id)
        if live is None:
            return batch
        if live.derived is not None and live.derived[:2] == (key, live.revision):
            return live.derived[2]
        history: History | None = None
        if batch.known and live.endorsements and fold is not None:
            reading = self._history(live, batch.user_id, version, fold, catalog)
            try:
                history = await asyncio.shield(reading)
            except Exception:  # the next request reads it again; this one falls back
                live.history = None
                raise
        return self._laid_over(batch, live, catalog, key, fold, history, final=True)

    def user_state_now(
        self, batch: UserState, catalog: ItemCatalog, key: str, version: str, fold: FoldIn | None
    ) -> UserState:
        """`user_state` without waiting: a batch history still being read is left out (the CF
        vector is then the batch one). What a request falls back on when the state is late."""
        live = self.users.get(batch.user_id)
        if live is None:
            return batch
        if live.derived is not None and live.derived[:2] == (key, live.revision):
            return live.derived[2]
        history: History | None = None
        needed = batch.known and bool(live.endorsements) and fold is not None
        if needed and live.history is not None and live.history[0] == version:
            reading = live.history[1]
            if reading.done() and not reading.cancelled() and reading.exception() is None:
                history = reading.result()
        final = not needed or history is not None
        return self._laid_over(batch, live, catalog, key, fold, history, final)

    def _laid_over(
        self,
        batch: UserState,
        live: LiveUser,
        catalog: ItemCatalog,
        key: str,
        fold: FoldIn | None,
        history: History | None,
        final: bool,
    ) -> UserState:
        cf: np.ndarray | None = None
        if fold is not None and live.endorsements and (history is not None or not batch.known):
            cf = fold.solve_with(history or History.empty(), live.endorsements, catalog)
        state = overlay(batch, live, catalog, self.settings.recent_items, cf, history)
        if final:  # kept until the user's next event; a state missing its history is not
            live.derived = (key, live.revision, state)
        return state

    def prefetch(
        self,
        user_ids: list[str],
        known: set[str],
        version: str,
        fold: FoldIn | None,
        catalog: ItemCatalog,
    ) -> None:
        """Start reading the batch histories the next requests of these users will fold in, so
        the request after an event does not wait for them (known: users the build saw)."""
        if fold is None:
            return
        for user_id in dict.fromkeys(user_ids):
            live = self.users.get(user_id)
            if live is not None and live.endorsements and user_id in known:
                self._history(live, user_id, version, fold, catalog)

    @staticmethod
    def _history(
        live: LiveUser, user_id: str, version: str, fold: FoldIn, catalog: ItemCatalog
    ) -> asyncio.Future[History]:
        """The user's batch history in `version`: read once, shared by whoever needs it."""
        if live.history is None or live.history[0] != version:
            reading = asyncio.ensure_future(fold.history(user_id, catalog))
            reading.add_done_callback(_observed)
            live.history = (version, reading)
        return live.history[1]


def _observed(task: asyncio.Future[History]) -> None:
    """Mark a failed read as seen (the waiting request logs it), so asyncio does not."""
    if not task.cancelled():
        task.exception()


def rating_scale(manifest: Manifest, catalog: ItemCatalog) -> float:
    """Top of the rating scale: the build's, or guessed from mean ratings as the build does."""
    if manifest.rating_max:
        return float(manifest.rating_max)
    rated = catalog.mean_rating[~np.isnan(catalog.mean_rating)]
    top = float(rated.max()) if len(rated) else 5.0
    return 5.0 if top <= 5.0 else 10.0 if top <= 10.0 else 100.0
