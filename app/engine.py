"""The engine the API talks to: the loaded catalog version, the pipeline, the live state, caches.

One `Engine` is created in the Starlette lifespan. Every request reads `engine.current` once and
uses that `Loaded` throughout, so it sees one consistent catalog and model version even while a
new one is swapped in: upserted items, a refreshed ANN index and a reloaded version all build a
new `Loaded` and replace the reference in one assignment (one swap at a time, under a lock).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import lancedb
import numpy as np
from threadpoolctl import threadpool_limits

from app import heap
from app.admission import Admission
from app.caches import Caches
from app.candidates.ann import VectorIndex
from app.deadlines import run_within
from app.domain import (
    ItemView,
    RecommendationRequest,
    RecommendationResult,
    ScoredItemView,
    UserState,
    UserView,
)
from app.errors import BadRequest, CatalogError, ClientGone, ReloadFailed, ShortlistError
from app.pipeline import USER_STATE, Pipeline
from app.realtime.feed import ItemsNotice, Polled
from app.realtime.fold_in import FoldIn
from app.realtime.item_upserts import check_drafts
from app.realtime.live import Live
from app.realtime.records import EventDraft, ItemDraft, RecordedEvents, Reloaded, UpsertedItems
from app.runtime import Runtime
from app.settings import Settings
from app.store import EVENTS, CatalogRoot

MAX_COUNT = 200
# a request that waited its turn this long asks whether its client is still there (a request
# admitted at once does not ask: asking costs about 20 us)
GONE_CHECK_AFTER_MS = 1.0
RETRY_FOLLOW_S = 30.0  # before loading again a pinned version that failed to load
Found = tuple[np.ndarray, np.ndarray]  # item_index and scores of an ANN search
log = logging.getLogger("shortlist.engine")


@dataclass
class Loaded:
    """A catalog version, the items upserted on top of it, and the pipeline assembled on it."""

    runtime: Runtime
    pipeline: Pipeline
    fold_in: FoldIn | None = None
    revision: int = 0  # how many catalog changes (upserts, re-indexes) were applied on top

    @property
    def key(self) -> str:
        """Names this exact catalog: caches of anything derived from items are keyed by it."""
        return f"{self.runtime.version}+{self.revision}"


async def _warm(loaded: Loaded) -> None:
    """Answer a few requests on a version before it serves, so that its first real ones do not
    pay the set-up done on first use: the user index's hash table, the first CatBoost call and
    its explainer's, the first touches of mapped rows. On the generated 1M catalog the first
    answer after a load took 72 ms of CPU and the second 31, against 12 after; over HTTP the
    requests queued behind them were answered degraded. Two known users (one explained) and an
    unknown one, at the catalog's reference time so that every source has work. Nothing is
    recorded: no admission, caches or observers. A failure is logged, not raised: the version
    still serves, and its requests are answered or refused as they would have been."""
    users = loaded.runtime.users.index
    at = datetime.fromtimestamp(loaded.runtime.manifest.reference_time, tz=UTC)
    known = [str(users[i]) for i in {0, len(users) // 2}] if len(users) else []
    asks = [(user, n == 1) for n, user in enumerate(known)] + [("shortlist-warm-up", False)]
    for user_id, explain in asks:
        request = RecommendationRequest(user_id=user_id, count=30, at=at, explain=explain)
        try:
            await loaded.pipeline.recommend(request)
        except Exception as exc:
            log.warning("warming up %s failed: %s", loaded.runtime.version, exc)
            return


class Engine:
    def __init__(self, settings: Settings, loaded: Loaded, live: Live | None = None) -> None:
        self.settings = settings
        self.current = loaded
        self.live = live
        self.caches = Caches(settings.redis_url, settings.redis_namespace)
        # called with every recommendation result (metrics): must be quick and never raise
        self.observers: list[Callable[[RecommendationResult], None]] = []
        # a pinned version this replica failed to load, and when: retried after RETRY_FOLLOW_S
        self._unloadable: tuple[str, float] | None = None
        # Serving's matrix products are small (1,000 candidates by a few vectors) and requests run
        # side by side: spare OpenBLAS threads only wait for a busy core (on a busy 2-core machine
        # a 1,000 x 384 by 384 x 5 product had a p99 of 24 ms with two BLAS threads, 4 ms with
        # one; at 1M items exploration's 3,000-row product took 12 ms against 2.8 ms).
        self._blas = threadpool_limits(settings.serving_blas_threads, "blas")
        self.admission = Admission(settings.pipeline.in_flight)
        self._swap = asyncio.Lock()  # one catalog change (upsert, re-index, reload) at a time
        self._background: set[asyncio.Task[Any]] = set()

    @classmethod
    async def start(cls, settings: Settings, live: bool = True) -> Engine:
        """Open the serving version; with `live`, bring it up to date from the live database."""
        opened = await Live.open(settings) if live else None
        try:
            loaded = await cls._load_pinned(settings, opened)
            engine = cls(settings, loaded, opened)
            if opened is not None:
                await opened.feed.pin(loaded.runtime.version, only_if_unset=True)
                await engine._adopt(engine.current, replay=True)
        except BaseException:
            if opened is not None:
                await opened.close()
            raise
        heap.settle()
        return engine

    @classmethod
    async def _load_pinned(cls, settings: Settings, live: Live | None) -> Loaded:
        """The version the replicas serve (pinned in the feed), else CURRENT."""
        pinned = await live.feed.pinned() if live is not None else None
        if pinned is not None:
            try:
                return await cls.load(settings, pinned, live)
            except ShortlistError as exc:
                log.error("cannot load the pinned version %s, serving CURRENT: %s", pinned, exc)
        return await cls.load(settings, None, live)

    @classmethod
    async def load(
        cls, settings: Settings, version: str | None = None, live: Live | None = None
    ) -> Loaded:
        runtime = await Runtime.open(
            settings.db_path, version, settings.faults, settings.content_int8_above
        )
        fold_in = FoldIn.for_version(
            runtime.items, runtime.manifest.cf, await _events(runtime), settings.faults
        )
        loaded = cls._assemble(settings, runtime, live, fold_in, 0)
        if not settings.faults:  # a test's injected delays and failures belong to its requests
            await _warm(loaded)
        return loaded

    @staticmethod
    def _assemble(
        settings: Settings,
        runtime: Runtime,
        live: Live | None,
        fold_in: FoldIn | None,
        revision: int,
    ) -> Loaded:
        trending = live.trending if live is not None else None
        pipeline = Pipeline.assemble(settings.pipeline, runtime, settings.faults, trending)
        return Loaded(runtime, pipeline, fold_in, revision)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.live is not None:
            await self.live.close()
        await self.caches.close()
        self._blas.restore_original_limits()

    # --- queries ------------------------------------------------------------------------------
    async def recommend(
        self,
        request: RecommendationRequest,
        loaded: Loaded | None = None,
        gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> RecommendationResult:
        """Recommendations on `loaded` (default: the current catalog, read once). `gone` tells
        whether the client has hung up: asked once, if the request waited for its turn at least
        GONE_CHECK_AFTER_MS, and if so ClientGone is raised instead of running the pipeline for
        no one (under overload, clients that give up would otherwise be answered anyway, each
        answer holding up the requests queued behind it)."""
        if not 1 <= request.count <= MAX_COUNT:
            raise BadRequest(f"count must be between 1 and {MAX_COUNT}, got {request.count}")
        current = loaded or self.current
        arrived = time.perf_counter()

        async def user() -> UserState:
            return await self.user_state(current, request.user_id)

        async with self.admission.turn(current.pipeline.config.budget_ms) as queued:
            if gone is not None and queued.ms >= GONE_CHECK_AFTER_MS and await gone():
                raise ClientGone(
                    f"the client hung up while the request waited {queued.ms:.0f} ms for its turn"
                )
            result = await current.pipeline.recommend(
                request,
                load_user=user,
                fallback_user=lambda: self.user_state_now(current, request.user_id),
                arrived=arrived,
                queued=queued,
            )
        for observe in self.observers:
            observe(result)
        return result

    async def user_state(self, loaded: Loaded, user_id: str) -> UserState:
        """The batch profile (cached) with the user's live events laid over it (never cached
        past an event: the overlay is recomputed whenever the user's live revision moves)."""
        key = f"user:{loaded.runtime.version}:{user_id}"
        state = await self.caches.local.get(key)
        if state is None:
            state = loaded.pipeline.user_state(user_id)
            await self.caches.local.set(key, state, ttl=self.settings.user_cache_ttl_s)
        if self.live is None:
            return state  # type: ignore[no-any-return]
        return await self.live.user_state(
            state, loaded.runtime.items, loaded.key, loaded.runtime.version, loaded.fold_in
        )

    def user_state_now(self, loaded: Loaded, user_id: str) -> UserState:
        """`user_state` without waiting on anything (no cache, no history read in flight)."""
        state = loaded.pipeline.user_state(user_id)
        if self.live is None:
            return state
        return self.live.user_state_now(
            state, loaded.runtime.items, loaded.key, loaded.runtime.version, loaded.fold_in
        )

    async def similar_items(
        self, item_id: str, count: int, loaded: Loaded | None = None
    ) -> list[ScoredItemView]:
        """Content and CF neighbours of an item, fused, never the item itself."""
        if not 1 <= count <= MAX_COUNT:
            raise BadRequest(f"count must be between 1 and {MAX_COUNT}, got {count}")
        loaded = loaded or self.current
        runtime = loaded.runtime
        anchor = runtime.items.index_of(item_id)
        if anchor is None:
            return []
        key = f"similar:{loaded.key}:{item_id}:{count}"
        cached = await self.caches.shared.get(key)
        if cached is not None:  # (item_index, score) pairs, as JSON
            return [ScoredItemView(self.item_view(runtime, int(i)), float(s)) for i, s in cached]
        indexes = [(runtime.content_index, runtime.items.content[anchor])]
        if runtime.items.in_cf[anchor]:
            indexes.append((runtime.cf_index, runtime.items.cf[anchor]))

        def search(index: VectorIndex, vector: np.ndarray) -> Callable[[], Awaitable[Found]]:
            return lambda: index.nearest(vector, count + 1)

        # Each search under the request budget: a late or failing one is left out (not cached).
        budget = self.settings.pipeline.budget_ms
        outcomes = await asyncio.gather(
            *(
                run_within(f"similar_items:{index.column}", budget, search(index, vector))
                for index, vector in indexes
            )
        )
        found = [o.value for o in outcomes if o.value is not None]
        fused: dict[int, float] = {}
        for items, _ in found:
            for rank, item in enumerate(items.tolist(), 1):
                if item != anchor:
                    fused[item] = fused.get(item, 0.0) + 1.0 / (10.0 + rank)
        best = sorted(fused, key=lambda i: -fused[i])[:count]
        top = max(fused.values(), default=1.0)
        result = [
            ScoredItemView(self.item_view(runtime, i), round(fused[i] / top, 6)) for i in best
        ]
        if len(found) == len(indexes):
            pairs = [[i, s.score] for i, s in zip(best, result, strict=True)]
            await self.caches.shared.set(key, pairs, ttl=self.settings.similar_cache_ttl_s)
        return result

    def item(self, item_id: str, loaded: Loaded | None = None) -> ItemView | None:
        runtime = (loaded or self.current).runtime
        index = runtime.items.index_of(item_id)
        return None if index is None else self.item_view(runtime, index)

    def items_by_index(self, runtime: Runtime, indexes: list[int]) -> list[ItemView]:
        return [self.item_view(runtime, i) for i in indexes]

    async def user(
        self, user_id: str, history: int = 20, loaded: Loaded | None = None
    ) -> UserView | None:
        current = loaded or self.current

        async def live_state() -> UserState:
            return await self.user_state(current, user_id)

        # Under the request budget, like recommendations: late, the batch profile answers.
        outcome = await run_within(
            USER_STATE, self.settings.pipeline.budget_ms, live_state, self.settings.faults
        )
        state = outcome.value or self.user_state_now(current, user_id)
        if not state.known:
            return None
        recent = self.items_by_index(current.runtime, state.recent_items[:history])
        return UserView(user_id, True, state.n_events, state.genre_shares, recent)

    # --- real time ----------------------------------------------------------------------------
    async def record_events(self, drafts: list[EventDraft]) -> RecordedEvents:
        """Check, durably store and apply events; returns once the accepted ones are durable."""
        live = self._live()
        if not drafts:
            raise BadRequest("events must hold at least one event")
        if len(drafts) > self.settings.max_events_per_call:
            raise BadRequest(
                f"at most {self.settings.max_events_per_call} events per call, got {len(drafts)}"
            )
        loaded = self.current
        runtime = loaded.runtime
        recorded = await live.record(drafts, runtime.items, runtime.manifest)
        users = [d.user_id for d in drafts]
        known = runtime.users.known(users)
        live.prefetch(users, known, runtime.version, loaded.fold_in, runtime.items)
        return recorded

    async def upsert_items(self, drafts: list[ItemDraft]) -> UpsertedItems:
        """Embed, store and serve new or changed items; the next request sees them."""
        live = self._live()
        drafts = check_drafts(drafts, self.settings.max_items_per_call)
        vectors = await live.items.embed(drafts, self.current.runtime.manifest.content_dim)
        async with self._swap, live.feed.items_lock():  # one writer across replicas too
            rows = await live.items.record(drafts, vectors)
            self.current, inserted, updated = await self._applied(self.current, rows)
            # before the answer: every replica's next request sees them. Every item of the call
            # is named, changed or not: a retry after a notice Redis refused (the items stored,
            # the call failed) changes nothing, and must still tell the other replicas
            await self._announce(self.current, [draft.item_id for draft in drafts])
        self._spawn(self.refresh_index())
        return UpsertedItems(inserted, updated)

    async def reload(self) -> Reloaded:
        """Switch to the catalog root's CURRENT version if it is not the one serving.

        The new version loads in the background (worker threads); requests keep being answered
        by the old one, which stays if anything fails (ReloadFailed says why).
        """
        started = time.perf_counter()
        async with self._swap:
            previous = self.current.runtime.version
            target = CatalogRoot(self.settings.db_path).current()
            if target is None:
                raise ReloadFailed(f"no CURRENT version in {self.settings.db_path}", previous)
            if target == previous:
                return Reloaded(previous, previous, False, 0, _ms(started))
            try:
                loaded = await self.load(self.settings, target, self.live)
                if self.live is not None:  # the other replicas follow before their next answer
                    await self.live.feed.pin(target)
                replayed = await self._adopt(loaded, replay=False)
            except Exception as exc:
                log.error("reload of %s failed, still serving %s: %s", target, previous, exc)
                reason = str(exc) if isinstance(exc, ShortlistError) else repr(exc)
                raise ReloadFailed(
                    f"could not load version {target}: {reason}; still serving {previous}",
                    previous,
                ) from exc
        heap.settle()
        log.info("now serving %s (was %s)", target, previous)
        return Reloaded(target, previous, True, replayed, _ms(started))

    async def sync(self) -> None:
        """Before a request: apply the events other replicas acknowledged, and switch to the
        version pinned for all replicas if it is not the one serving. Without replicas, nothing
        to do; with Redis unreachable, the request is answered from this replica's state."""
        if self.live is None:
            return
        try:
            polled = await self.live.catch_up()
        except Exception as exc:
            log.warning("cannot read the replicas' shared state: %s", exc)
            return
        if polled.version is not None and polled.version != self.current.runtime.version:
            await self._follow(polled.version)  # its start applies every live item
        elif polled.gap or polled.items:
            await self._follow_items(polled)

    async def _follow_items(self, polled: Polled) -> None:
        """Take in the items other replicas wrote into the serving version's table (all the
        live items after a gap in the feed). A failed read is logged; the next notice, switch
        or restart takes them in, since the table holds them."""
        live = self._live()
        async with self._swap:
            loaded = self.current
            version = loaded.runtime.version
            try:
                if polled.gap:
                    stored = await live.items.stored()
                    ids = stored["item_id"].to_pylist() if stored is not None else []
                else:
                    ids = [i for n in polled.items if n.version == version for i in n.item_ids]
                runtime = await live.items.follow(loaded.runtime, list(dict.fromkeys(ids)))
            except Exception as exc:
                log.error("cannot take in the items another replica upserted: %s", exc)
                return
            self.current = self._with_runtime(loaded, runtime)

    async def _applied(self, loaded: Loaded, rows: Any) -> tuple[Loaded, list[str], list[str]]:
        """`loaded` with these live item rows applied to its version; (loaded, inserted,
        updated). Call it holding the items lock."""
        runtime, inserted, updated = await self._live().items.apply(loaded.runtime, rows)
        return self._with_runtime(loaded, runtime), inserted, updated

    async def _announce(self, loaded: Loaded, item_ids: list[str]) -> None:
        """Tell the other replicas which items were written into `loaded`'s version."""
        if item_ids:
            await self._live().feed.publish_items(ItemsNotice(loaded.runtime.version, item_ids))

    def _with_runtime(self, loaded: Loaded, runtime: Runtime) -> Loaded:
        """`loaded` on a changed runtime (the pipeline assembled again), or itself if unchanged."""
        if runtime is loaded.runtime:
            return loaded
        return self._assemble(
            self.settings, runtime, self.live, loaded.fold_in, loaded.revision + 1
        )

    async def _follow(self, version: str) -> None:
        """Serve `version`, which another replica pinned (requests wait: every replica must
        answer with the pinned version once it is pinned)."""
        async with self._swap:
            previous = self.current.runtime.version
            failed = self._unloadable
            if version == previous or (
                failed is not None
                and failed[0] == version
                and time.monotonic() - failed[1] < RETRY_FOLLOW_S
            ):
                return
            try:
                await self._adopt(await self.load(self.settings, version, self.live), False)
            except Exception as exc:
                self._unloadable = (version, time.monotonic())
                log.error(
                    "cannot follow the pinned version %s, serving %s: %s", version, previous, exc
                )
                return
        heap.settle()
        log.info("now serving %s (pinned by a replica; was %s)", version, previous)

    async def _adopt(self, loaded: Loaded, replay: bool) -> int:
        """Apply the live items to `loaded`, replay the live events it has not trained on (if
        `replay`, or if its training watermark differs from the live state's), and make it
        current. Returns how many events were replayed."""
        live = self._live()
        rows = await live.items.stored()
        if rows is not None:
            async with live.feed.items_lock():
                loaded, inserted, updated = await self._applied(loaded, rows)
                await self._announce(loaded, inserted + updated)
        watermark = loaded.runtime.manifest.live_watermark
        replayed = 0
        if replay or watermark != live.watermark:
            replayed = await live.replay(watermark)
        self.current = loaded  # no await since the replay: no event lands in between
        return replayed

    async def refresh_index(self, at_least: int | None = None) -> None:
        """Bring the ANN indexes up to the appended items, then serve the refreshed table.

        Runs after every upsert (in the background) and acts once `at_least` (default
        SHORTLIST_REINDEX_AFTER_ITEMS) rows wait outside an index.
        """
        if self.live is None:
            return
        try:
            async with self._swap:
                loaded = self.current
                refreshed = await self.live.items.refresh_index(
                    loaded.runtime.path,
                    self.settings.reindex_after_items if at_least is None else at_least,
                )
                if refreshed:
                    runtime = await loaded.runtime.with_items(loaded.runtime.items)
                    self.current = self._with_runtime(loaded, runtime)
        except Exception as exc:  # an index refresh is an optimisation: searches stay correct
            log.warning("refreshing the item index failed: %s", exc)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _live(self) -> Live:
        if self.live is None:
            raise CatalogError("this engine was started without its live database")
        return self.live

    @staticmethod
    def item_id(runtime: Runtime, index: int) -> str:
        return str(runtime.items.ids[index])

    @staticmethod
    def item_view(runtime: Runtime, index: int) -> ItemView:
        items = runtime.items
        position = items.series_position[index]
        series = int(items.series[index])
        released = items.released_day[index]
        rating = items.mean_rating[index]
        return ItemView(
            item_id=str(items.ids[index]),
            title=str(items.titles[index]),
            description=str(items.descriptions[index] or ""),
            genres=list(items.genres[index]),
            series=items.series_names[series] if series >= 0 else None,
            series_position=None if math.isnan(position) else int(position),
            released=None
            if math.isnan(released)
            else date(1970, 1, 1) + timedelta(days=int(released)),
            popularity=float(items.popularity_pct[index]),
            mean_rating=None if np.isnan(rating) else round(float(rating), 3),
        )


def now() -> datetime:
    return datetime.now(tz=UTC)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


async def _events(runtime: Runtime) -> Any | None:
    """The version's events table (async), where fold-in reads a user's batch history."""
    try:
        db = await lancedb.connect_async(str(runtime.path.resolve()))
        return await db.open_table(EVENTS)
    except (ValueError, FileNotFoundError, OSError) as exc:
        log.warning("no events table in %s: %s; fold-in uses live events only", runtime.path, exc)
        return None
