"""The long tail: a seeded sample of less-popular items, ranked by fit to the user's profile.

Keeps items the CF model and the popular list would never surface in play (hotspotting).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from app.candidates.base import SourceConfig, SourceInput, SourceResult, keep_allowed, top_k
from app.candidates.memory_search import InMemorySearch
from app.candidates.profile_fit import best_fit
from app.items import ItemCatalog


class ExplorationConfig(SourceConfig):
    limit: int = Field(100, ge=0, le=5000, description="Most tail items offered.")
    max_popularity_pct: float = Field(
        0.8, gt=0, le=1, description="Items above this popularity percentile are not tail."
    )
    min_popularity_pct: float = Field(
        0.2, ge=0, lt=1, description="Items below this percentile are too obscure to offer."
    )
    sample: int = Field(3000, ge=1, description="Tail items sampled per request and scored.")
    seed: int = Field(0, description="Mixed with the user id and date into the sampling seed.")


class Exploration:
    name: ClassVar[str] = "exploration"

    def __init__(
        self, config: ExplorationConfig, items: ItemCatalog, content: InMemorySearch | None = None
    ) -> None:
        self.config = config
        self.items = items
        self.content = content  # the content column's in-memory search, if the build chose one
        pct = items.popularity_pct
        self._tail = np.flatnonzero(
            (pct <= config.max_popularity_pct) & (pct >= config.min_popularity_pct)
        )

    async def __call__(self, given: SourceInput) -> SourceResult:
        if not len(self._tail):
            return SourceResult.skip("no tail items")
        rng = given.sampling_rng(self.config.seed)
        pool = rng.choice(self._tail, size=min(self.config.sample, len(self._tail)), replace=False)
        pool = pool[given.gate.allows(pool)]
        profile = given.user.content_vector
        if profile is not None:
            found, scores = best_fit(
                self.items.content, self.content, pool, profile, self.config.limit
            )
            return SourceResult(found, scores)
        scores = rng.random(len(pool)).astype(np.float32)
        best = top_k(scores, self.config.limit)
        return keep_allowed(SourceResult(pool[best], scores[best]), given.gate, self.config.limit)
