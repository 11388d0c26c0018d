"""People who liked what you liked also liked: item neighbours of the user's recent items.

The neighbour lists (top k per item by shrunk cosine similarity of their audiences) are computed
by the build; here the neighbours of the user's recent items are summed, newer items weighing
more. Pure numpy: no store call.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from app.candidates.base import SourceConfig, SourceInput, SourceResult, keep_allowed, top_k


class ItemKnnConfig(SourceConfig):
    limit: int = Field(300, ge=0, le=5000, description="Most items offered.")
    history: int = Field(50, ge=1, le=500, description="Most recent items whose neighbours count.")
    decay: float = Field(
        0.98, gt=0, le=1, description="Weight of each older history item relative to the next."
    )


class ItemKnn:
    name: ClassVar[str] = "item_knn"

    def __init__(
        self, config: ItemKnnConfig, neighbours: np.ndarray | None, scores: np.ndarray | None
    ) -> None:
        self.config = config
        self.neighbours = neighbours
        self.scores = scores

    async def __call__(self, given: SourceInput) -> SourceResult:
        if self.neighbours is None or self.scores is None:
            return SourceResult.skip("no item neighbours in this catalog version")
        history = np.asarray(given.user.recent_items[: self.config.history], dtype=np.int64)
        history = history[(history >= 0) & (history < len(self.neighbours))]
        if not len(history):
            return SourceResult.skip("no recent items")
        weight = self.config.decay ** np.arange(len(history), dtype=np.float32)
        found = self.neighbours[history].ravel()
        mass = (self.scores[history] * weight[:, None]).ravel()
        valid = found >= 0
        items, inverse = np.unique(found[valid], return_inverse=True)
        totals = np.bincount(inverse, weights=mass[valid]).astype(np.float32)
        allowed = given.gate.allows(items)
        items, totals = items[allowed], totals[allowed]
        best = top_k(totals, self.config.limit)
        return keep_allowed(SourceResult(items[best], totals[best]), given.gate, self.config.limit)
