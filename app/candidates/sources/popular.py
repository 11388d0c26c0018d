"""Popular now: items by time-decayed popularity, walked in order past filtered-out items."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from app.candidates.base import SourceConfig, SourceInput, SourceResult
from app.items import ItemCatalog

CHUNK = 2048


class PopularConfig(SourceConfig):
    limit: int = Field(200, ge=0, le=5000, description="Most popular items offered.")


class Popular:
    name: ClassVar[str] = "popular"

    def __init__(self, config: PopularConfig, items: ItemCatalog) -> None:
        self.config = config
        self.items = items
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
        return SourceResult(items, self.items.popularity[items].astype(np.float32))
