"""Stage 1, candidate generation: every source concurrently under its own deadline, merged.

Each candidate keeps every source hit that found it (source, rank, score, anchor); candidates
are ordered by reciprocal-rank fusion over their hits and cut to `max_candidates`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field

from app.candidates.base import CandidateSource, ItemGate, SourceInput, SourceResult
from app.candidates.sources.cf_ann import CfAnnConfig
from app.candidates.sources.content_ann import ContentAnnConfig
from app.candidates.sources.exploration import ExplorationConfig
from app.candidates.sources.fresh import FreshConfig
from app.candidates.sources.item_knn import ItemKnnConfig
from app.candidates.sources.item_to_item import ItemToItemConfig
from app.candidates.sources.popular import PopularConfig
from app.deadlines import Fault, run_within
from app.domain import Candidates, RecommendationRequest, SourceHit, StageReport, UserState
from app.items import ItemCatalog

RRF_K = 60.0


class CandidatesConfig(BaseModel):
    max_candidates: int = Field(1000, ge=1, le=10_000, description="Candidates passed to ranking.")
    exclude_consumed: bool = Field(True, description="Drop items the user already consumed.")
    cf_ann: CfAnnConfig = Field(default_factory=CfAnnConfig)
    content_ann: ContentAnnConfig = Field(default_factory=ContentAnnConfig)
    item_to_item: ItemToItemConfig = Field(default_factory=ItemToItemConfig)
    item_knn: ItemKnnConfig = Field(default_factory=ItemKnnConfig)
    fresh: FreshConfig = Field(default_factory=FreshConfig)
    popular: PopularConfig = Field(default_factory=PopularConfig)
    exploration: ExplorationConfig = Field(default_factory=ExplorationConfig)


@dataclass
class CandidateOutput:
    candidates: Candidates
    sources: list[StageReport]


class CandidateStage:
    def __init__(
        self,
        config: CandidatesConfig,
        sources: list[CandidateSource],
        items: ItemCatalog,
        faults: dict[str, Fault] | None = None,
    ) -> None:
        self.config = config
        self.sources = [s for s in sources if s.config.enabled]
        self.items = items
        self.faults = faults or {}

    async def __call__(self, request: RecommendationRequest, user: UserState) -> CandidateOutput:
        gate = ItemGate.for_request(request, user, self.items, self.config.exclude_consumed)
        given = SourceInput(request, user, gate)

        def call(source: CandidateSource):  # type: ignore[no-untyped-def]
            return lambda: source(given)

        outcomes = await asyncio.gather(
            *(run_within(s.name, s.config.deadline_ms, call(s), self.faults) for s in self.sources)
        )
        reports = []
        results: list[tuple[str, SourceResult]] = []
        for source, outcome in zip(self.sources, outcomes, strict=True):
            result = outcome.value
            if result is not None and result.skipped is None:
                results.append((source.name, result))
            status = outcome.status
            detail = outcome.error
            if result is not None and result.skipped is not None:
                status, detail = type(status).SKIPPED, result.skipped
            reports.append(
                StageReport(
                    name=f"source:{source.name}",
                    ms=outcome.ms,
                    status=status,
                    in_count=0,
                    out_count=len(result) if result is not None else 0,
                    detail=detail,
                )
            )
        return CandidateOutput(merge(results, self.config.max_candidates), reports)


def merge(results: list[tuple[str, SourceResult]], limit: int) -> Candidates:
    """Union of the sources' items; each keeps all its hits; ordered by reciprocal-rank fusion."""
    hits: dict[int, list[SourceHit]] = {}
    fused: dict[int, float] = {}
    for name, result in results:
        anchors = result.anchors
        for rank, (item, score) in enumerate(
            zip(result.items.tolist(), result.scores.tolist(), strict=True), 1
        ):
            anchor = (
                int(anchors[rank - 1]) if anchors is not None and anchors[rank - 1] >= 0 else None
            )
            hits.setdefault(item, []).append(SourceHit(name, rank, float(score), anchor))
            fused[item] = fused.get(item, 0.0) + 1.0 / (RRF_K + rank)
    if not hits:
        return Candidates.empty()
    order = sorted(fused, key=lambda i: -fused[i])[:limit]
    return Candidates(np.asarray(order, dtype=np.int64), [hits[i] for i in order])
