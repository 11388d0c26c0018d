"""Items whose text resembles what the user liked: ANN on the user's content profile."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from app.candidates.ann import VectorIndex
from app.candidates.base import SourceConfig, SourceInput, SourceResult, keep_allowed


class ContentAnnConfig(SourceConfig):
    limit: int = Field(300, ge=0, le=5000, description="Most items from the content search.")


class ContentAnn:
    name: ClassVar[str] = "content_ann"

    def __init__(self, config: ContentAnnConfig, index: VectorIndex) -> None:
        self.config = config
        self.index = index

    async def __call__(self, given: SourceInput) -> SourceResult:
        vector = given.user.content_vector
        if vector is None:
            return SourceResult.skip("no content profile for this user")
        k = self.config.limit + min(len(given.gate.blocked), self.config.limit)
        items, scores = await self.index.nearest(vector, k, given.gate.sql)
        return keep_allowed(SourceResult(items, scores), given.gate, self.config.limit)
