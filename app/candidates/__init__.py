"""Stage 1, candidate generation: every source concurrently under its own deadline, merged.

Each candidate keeps every source hit that found it (source, rank, score, anchor); candidates
are ordered by the catalog version's fusion (`app.candidates.fusion`: hit rates measured by the
build, or reciprocal rank) and cut to `max_candidates`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field

from app.candidates.base import CandidateSource, ItemGate, SourceInput, SourceResult
from app.candidates.fusion import Fusion, ReciprocalRank
from app.candidates.sources.cf_ann import CfAnnConfig
from app.candidates.sources.content_ann import ContentAnnConfig
from app.candidates.sources.ease import EaseConfig
from app.candidates.sources.exploration import ExplorationConfig
from app.candidates.sources.fresh import FreshConfig
from app.candidates.sources.item_knn import ItemKnnConfig
from app.candidates.sources.item_to_item import ItemToItemConfig
from app.candidates.sources.popular import PopularConfig
from app.deadlines import Fault, run_within
from app.domain import Candidates, HitTable, RecommendationRequest, StageReport, UserState
from app.items import ItemCatalog
from app.sorting import runs, stable_order


class CandidatesConfig(BaseModel):
    max_candidates: int = Field(1000, ge=1, le=10_000, description="Candidates passed to ranking.")
    exclude_consumed: bool = Field(True, description="Drop items the user already consumed.")
    cf_ann: CfAnnConfig = Field(default_factory=CfAnnConfig)
    content_ann: ContentAnnConfig = Field(default_factory=ContentAnnConfig)
    item_to_item: ItemToItemConfig = Field(default_factory=ItemToItemConfig)
    item_knn: ItemKnnConfig = Field(default_factory=ItemKnnConfig)
    ease: EaseConfig = Field(default_factory=EaseConfig)
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
        fusion: Fusion | None = None,
    ) -> None:
        self.config = config
        self.sources = [s for s in sources if s.config.enabled]
        self.items = items
        self.faults = faults or {}
        self.fusion = fusion or ReciprocalRank()

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
        return CandidateOutput(merge(results, self.config.max_candidates, self.fusion), reports)


def merge(
    results: list[tuple[str, SourceResult]], limit: int, fusion: Fusion | None = None
) -> Candidates:
    """Union of the sources' items; each keeps all its hits; the best `limit` by the fusion.

    Ties keep the order in which items were first found. The union is scored in columns; hit
    objects are made for the kept candidates only.
    """
    results = [(name, result) for name, result in results if len(result)]
    if not results:
        return Candidates.empty()
    found = np.concatenate([np.asarray(r.items, dtype=np.int64) for _, r in results])
    by_item = stable_order(found)  # by item_index, each item's hits in the order found
    grouped = found[by_item]
    starts, run = runs(grouped)
    unique, first = grouped[starts], by_item[starts]
    appearance = np.argsort(first)  # union positions, first found first (no ties)
    position = np.empty(len(unique), dtype=np.int64)
    position[appearance] = np.arange(len(unique))
    row = np.empty(len(found), dtype=np.int64)
    row[by_item] = position[run]
    by_row = stable_order(row)  # each item's hits together, in the order found
    anchors = [np.full(len(r), -1) if r.anchors is None else r.anchors for _, r in results]
    union = HitTable(
        [name for name, _ in results],
        row[by_row],
        np.concatenate([np.full(len(r), i) for i, (_, r) in enumerate(results)])[by_row],
        np.concatenate([np.arange(1, len(r) + 1) for _, r in results])[by_row],
        np.concatenate([np.asarray(r.scores, dtype=np.float64) for _, r in results])[by_row],
        np.concatenate(anchors).astype(np.int64)[by_row],
    )
    fused = (fusion or ReciprocalRank()).scores(union, len(unique))
    kept = np.argsort(-fused, kind="stable")[:limit]
    return Candidates(unique[appearance], table=union).take(kept)
