"""Sources that score items by their relations to the user's endorsed history.

The relation tables come from the build (`app.item_relations`); each candidate keeps as anchor
the history item that contributed most to it ("because you liked X"). Pure numpy: no store call.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from app.candidates.base import SourceConfig, SourceInput, SourceResult, top_k
from app.item_relations import ItemRelations


class RelatedConfig(SourceConfig):
    history: int = Field(
        500, ge=1, le=5000, description="Most recent endorsed items whose relations count."
    )
    decay: float = Field(
        1.0, gt=0, le=1, description="Weight of each older history item relative to the next."
    )


class RelatedToHistory:
    """Items most related to what the user endorsed, by one relation table."""

    name: ClassVar[str]
    table: ClassVar[str]  # which relation table of the catalog version

    def __init__(self, config: RelatedConfig, relations: ItemRelations | None) -> None:
        self.config = config
        self.relations = relations

    async def __call__(self, given: SourceInput) -> SourceResult:
        if self.relations is None:
            return SourceResult.skip(f"no {self.table} relations in this catalog version")
        user = given.user
        limit = self.config.history
        if not len(user.history):
            return SourceResult.skip("no endorsed items")
        affinity = self.relations.affinity(
            user.history[:limit], user.history_weights[:limit], self.config.decay
        )
        allowed = given.gate.allows(affinity.items)
        items, scores = affinity.items[allowed], affinity.scores[allowed]
        best = top_k(scores, self.config.limit)
        items, scores = items[best], scores[best]
        return SourceResult(items, scores, affinity.anchors(items))
