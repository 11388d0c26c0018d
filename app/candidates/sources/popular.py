"""Popular now: items by time-decayed popularity, walked in order past filtered-out items.

With a live trending signal, the batch order is blended with what many distinct users endorsed
in the last hours (reciprocal-rank fusion), so today's hits rise without waiting for a rebuild.
Scores stay the batch popularity (what the ranker was trained on); only the order moves.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

import numpy as np
from pydantic import Field

from app.candidates.base import SourceConfig, SourceInput, SourceResult
from app.items import ItemCatalog

CHUNK = 2048
RRF_K = 60.0


class TrendingSignal(Protocol):
    def ranked(self, catalog: ItemCatalog, n: int) -> np.ndarray:
        """item_index of the top trending items, best first."""
        ...


class PopularConfig(SourceConfig):
    limit: int = Field(200, ge=0, le=5000, description="Most popular items offered.")
    trending_weight: float = Field(
        1.0,
        ge=0,
        description="Weight of the live trending order against the batch popularity order "
        "(reciprocal-rank fusion); 0 leaves the batch order alone.",
    )
    trending_items: int = Field(100, ge=0, le=5000, description="Top trending items blended in.")


class Popular:
    name: ClassVar[str] = "popular"

    def __init__(
        self, config: PopularConfig, items: ItemCatalog, trending: TrendingSignal | None = None
    ) -> None:
        self.config = config
        self.items = items
        self.trending = trending
        self._order = np.argsort(-items.popularity, kind="stable")

    async def __call__(self, given: SourceInput) -> SourceResult:
        picked: list[np.ndarray] = []
        found = 0
        for start in range(0, len(self._order), CHUNK):
            chunk = self._order[start : start + CHUNK]
            chunk = chunk[given.gate.allows(chunk)]
            picked.append(chunk)
            found += len(chunk)
            if found >= self.config.limit or start >= 50 * CHUNK:
                break
        items = np.concatenate(picked)[: self.config.limit] if picked else np.zeros(0, np.int64)
        items = self._blend(items, given)
        return SourceResult(items, self.items.popularity[items].astype(np.float32))

    def _blend(self, items: np.ndarray, given: SourceInput) -> np.ndarray:
        if self.trending is None or not self.config.trending_weight or not len(items):
            return items
        trend = self.trending.ranked(self.items, self.config.trending_items)
        trend = trend[given.gate.allows(trend)]
        if not len(trend):
            return items
        fused: dict[int, float] = {}
        for rank, item in enumerate(items.tolist(), 1):
            fused[item] = 1.0 / (RRF_K + rank)
        for rank, item in enumerate(trend.tolist(), 1):
            fused[item] = fused.get(item, 0.0) + self.config.trending_weight / (RRF_K + rank)
        order = sorted(fused, key=lambda i: -fused[i])[: self.config.limit]
        return np.asarray(order, dtype=np.int64)
