"""Recent releases, which the CF model has barely seen: ranked by fit to the user's profile.

A request scores at most `sample` of the window's releases (a sample seeded by user and date
when there are more): the window grows with the catalog (48k releases in 90 days at 1M items
of the synthetic catalog, 480k at 10M), and each scored item reads its content vector (its
projection first, where the build chose the partitioned content search: app.candidates.profile_fit).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from app.candidates.base import SourceConfig, SourceInput, SourceResult, keep_allowed, top_k
from app.candidates.memory_search import InMemorySearch
from app.candidates.profile_fit import best_fit
from app.items import DAY, ItemCatalog


class FreshConfig(SourceConfig):
    limit: int = Field(100, ge=0, le=5000, description="Most fresh items offered.")
    window_days: float = Field(90.0, gt=0, description="How recent a release counts as fresh.")
    sample: int = Field(
        3000, ge=1, description="Most releases in the window scored per request (sampled)."
    )
    seed: int = Field(0, description="Mixed with the user id and date into the sampling seed.")


class Fresh:
    name: ClassVar[str] = "fresh"

    def __init__(
        self, config: FreshConfig, items: ItemCatalog, content: InMemorySearch | None = None
    ) -> None:
        self.config = config
        self.items = items
        self.content = content  # the content column's in-memory search, if the build chose one
        released = np.nan_to_num(items.released_day, nan=-np.inf)
        self._order = np.argsort(released, kind="stable")
        self._sorted_days = released[self._order]

    async def __call__(self, given: SourceInput) -> SourceResult:
        today = given.request.at.timestamp() / DAY
        lo = np.searchsorted(self._sorted_days, today - self.config.window_days, side="left")
        hi = np.searchsorted(self._sorted_days, today, side="right")
        pool = self._order[lo:hi]
        if len(pool) > self.config.sample:
            rng = given.sampling_rng(self.config.seed)
            pool = np.sort(rng.choice(pool, size=self.config.sample, replace=False))
        pool = pool[given.gate.allows(pool)]
        if not len(pool):
            return SourceResult.skip("no releases in the window")
        profile = given.user.content_vector
        if profile is not None:
            found, scores = best_fit(
                self.items.content, self.content, pool, profile, self.config.limit
            )
            return SourceResult(found, scores)
        age = today - self.items.released_day[pool]
        scores = (np.log1p(self.items.popularity[pool]) + 1.0 / (1.0 + age)).astype(np.float32)
        best = top_k(scores, self.config.limit)
        return keep_allowed(SourceResult(pool[best], scores[best]), given.gate, self.config.limit)
