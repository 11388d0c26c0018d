"""The engine the API talks to: the loaded catalog version, the pipeline, and the caches.

One `Engine` is created in the Starlette lifespan; every request reads `engine.current` once,
so it sees one consistent model version even while a new one is being swapped in.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
from aiocache import SimpleMemoryCache

from app.domain import (
    ItemView,
    RecommendationRequest,
    RecommendationResult,
    ScoredItemView,
    UserState,
    UserView,
)
from app.errors import BadRequest
from app.pipeline import Pipeline
from app.runtime import Runtime
from app.settings import Settings

MAX_COUNT = 200


@dataclass
class Loaded:
    """A catalog version and the pipeline assembled on it."""

    runtime: Runtime
    pipeline: Pipeline


class Engine:
    def __init__(self, settings: Settings, loaded: Loaded) -> None:
        self.settings = settings
        self.current = loaded
        self.cache = SimpleMemoryCache()

    @classmethod
    async def start(cls, settings: Settings) -> Engine:
        return cls(settings, await cls.load(settings))

    @staticmethod
    async def load(settings: Settings, version: str | None = None) -> Loaded:
        runtime = await Runtime.open(settings.db_path, version)
        return Loaded(runtime, Pipeline.assemble(settings.pipeline, runtime, settings.faults))

    async def close(self) -> None:
        await self.cache.clear()

    # --- queries ------------------------------------------------------------------------------
    async def recommend(self, request: RecommendationRequest) -> RecommendationResult:
        if not 1 <= request.count <= MAX_COUNT:
            raise BadRequest(f"count must be between 1 and {MAX_COUNT}, got {request.count}")
        loaded = self.current
        user = await self.user_state(loaded, request.user_id)
        return await loaded.pipeline.recommend(request, user)

    async def user_state(self, loaded: Loaded, user_id: str) -> UserState:
        key = f"user:{loaded.runtime.version}:{user_id}"
        state = await self.cache.get(key)
        if state is None:
            state = loaded.pipeline.user_state(user_id)
            await self.cache.set(key, state, ttl=self.settings.user_cache_ttl_s)
        return state  # type: ignore[no-any-return]

    async def similar_items(self, item_id: str, count: int) -> list[ScoredItemView]:
        """Content and CF neighbours of an item, fused, never the item itself."""
        if not 1 <= count <= MAX_COUNT:
            raise BadRequest(f"count must be between 1 and {MAX_COUNT}, got {count}")
        loaded = self.current
        runtime = loaded.runtime
        anchor = runtime.items.index_of(item_id)
        if anchor is None:
            return []
        key = f"similar:{runtime.version}:{item_id}:{count}"
        cached = await self.cache.get(key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        searches = [runtime.content_index.nearest(runtime.items.content[anchor], count + 1)]
        if runtime.items.in_cf[anchor]:
            searches.append(runtime.cf_index.nearest(runtime.items.cf[anchor], count + 1))
        found = await asyncio.gather(*searches)
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
        await self.cache.set(key, result, ttl=self.settings.similar_cache_ttl_s)
        return result

    def item(self, item_id: str) -> ItemView | None:
        runtime = self.current.runtime
        index = runtime.items.index_of(item_id)
        return None if index is None else self.item_view(runtime, index)

    def items_by_index(self, runtime: Runtime, indexes: list[int]) -> list[ItemView]:
        return [self.item_view(runtime, i) for i in indexes]

    async def user(self, user_id: str, history: int = 20) -> UserView | None:
        loaded = self.current
        state = await self.user_state(loaded, user_id)
        if not state.known:
            return None
        recent = self.items_by_index(loaded.runtime, state.recent_items[:history])
        return UserView(user_id, True, state.n_events, state.genre_shares, recent)

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
