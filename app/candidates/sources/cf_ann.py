"""What users like this user engaged with: ANN on the user's CF vector."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from app.candidates.ann import VectorIndex
from app.candidates.base import SourceConfig, SourceInput, SourceResult, keep_allowed


class CfAnnConfig(SourceConfig):
    limit: int = Field(500, ge=0, le=5000, description="Most items from the CF search.")


class CfAnn:
    name: ClassVar[str] = "cf_ann"

    def __init__(self, config: CfAnnConfig, index: VectorIndex) -> None:
        self.config = config
        self.index = index

    async def __call__(self, given: SourceInput) -> SourceResult:
        vector = given.user.cf_vector
        if vector is None:
            return SourceResult.skip("no CF vector for this user")
        k = self.config.limit + min(len(given.gate.blocked), self.config.limit)
        items, scores = await self.index.nearest(vector, k, given.gate.sql)
        return keep_allowed(SourceResult(items, scores), given.gate, self.config.limit)
