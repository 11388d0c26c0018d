"""Because you watched X: neighbours of the user's most recent items, each keeping its anchor.

An anchor's neighbours do not depend on the user, and users' recent items are mostly the same
popular few, so the source remembers the unfiltered neighbours of its most recently used
anchors (`remembered_anchors`, least recently used forgotten first). Each anchor's widest list
(`2 * per_anchor + 1`: the most any user asks for) is kept and cut to what a user asks. The
memory lives as long as the pipeline: a new catalog version or new items assemble a new one.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import ClassVar

import numpy as np
from pydantic import Field

from app.candidates.ann import VectorIndex
from app.candidates.base import SourceConfig, SourceInput, SourceResult, keep_allowed
from app.items import ItemCatalog
from app.mapped_rows import VectorRows

Allows = Callable[[np.ndarray], np.ndarray]


class ItemToItemConfig(SourceConfig):
    limit: int = Field(200, ge=0, le=5000, description="Most items over all anchors.")
    anchors: int = Field(5, ge=1, le=50, description="Most recent items used as anchors.")
    per_anchor: int = Field(40, ge=1, le=1000, description="Neighbours asked per anchor.")
    remembered_anchors: int = Field(
        20_000, ge=0, description="Anchors whose neighbours are remembered (0: none)."
    )


class ItemToItem:
    name: ClassVar[str] = "item_to_item"

    def __init__(
        self, config: ItemToItemConfig, items: ItemCatalog, cf: VectorIndex, content: VectorIndex
    ) -> None:
        self.config = config
        self.items = items
        self.cf = cf
        self.content = content
        self._remembered: OrderedDict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = (
            OrderedDict()
        )

    async def __call__(self, given: SourceInput) -> SourceResult:
        anchors = given.user.recent_items[: self.config.anchors]
        if not anchors:
            return SourceResult.skip("no recent items")
        k = self.config.per_anchor + 1 + min(len(given.gate.blocked), self.config.per_anchor)
        # CF neighbours say "people who watched X also watched"; items the CF model has not
        # seen fall back to content neighbours.
        searches = [
            (self.cf, self.items.cf, a)
            if self.items.in_cf[a]
            else (self.content, self.items.content, a)
            for a in anchors
        ]
        sql, allows = given.gate.sql, given.gate.allows
        if all(index.memory is not None for index, _, _ in searches):
            # in memory a search never waits: one after another, without a task each
            found = [await self._neighbours(*s, k, sql, allows) for s in searches]
        else:
            found = await asyncio.gather(*(self._neighbours(*s, k, sql, allows) for s in searches))
        items, scores, anchor_of, order = [], [], [], []
        for position, (anchor, (idx, score)) in enumerate(zip(anchors, found, strict=True)):
            keep = idx != anchor
            idx, score = idx[keep][: self.config.per_anchor], score[keep][: self.config.per_anchor]
            items.append(idx)
            scores.append(score)
            anchor_of.append(np.full(len(idx), anchor, dtype=np.int64))
            # interleave: every anchor's best first, the most recent anchor winning ties
            order.append(np.arange(len(idx)) * len(anchors) + position)
        all_items = np.concatenate(items)
        ranked = np.argsort(np.concatenate(order), kind="stable")
        all_items = all_items[ranked]
        _, first = np.unique(all_items, return_index=True)
        first = np.sort(first)
        result = SourceResult(
            all_items[first],
            np.concatenate(scores)[ranked][first],
            np.concatenate(anchor_of)[ranked][first],
        )
        return keep_allowed(result, given.gate, self.config.limit)

    async def _neighbours(
        self,
        index: VectorIndex,
        rows: VectorRows,
        anchor: int,
        k: int,
        sql: str | None,
        allows: Allows,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The anchor's k nearest items in `index` (whose vectors are `rows`), remembered when
        no filter applies; its vector is read only for a search."""
        if sql is not None or self.config.remembered_anchors == 0:
            return await index.nearest(rows[anchor], k, sql, allows)
        key = (index.column, anchor)
        known = self._remembered.get(key)
        if known is None:
            known = await index.nearest(rows[anchor], 2 * self.config.per_anchor + 1)
            self._remembered[key] = known
            while len(self._remembered) > self.config.remembered_anchors:
                self._remembered.popitem(last=False)
        else:
            self._remembered.move_to_end(key)
        return known[0][:k], known[1][:k]
