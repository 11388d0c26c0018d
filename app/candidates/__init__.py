"""Stage 1, candidate generation: every source concurrently under its own deadline, merged.

Each candidate keeps every source hit that found it (source, rank, score, anchor); candidates
are ordered by the catalog version's fusion (`app.candidates.fusion`: hit rates measured by the
build, or reciprocal rank) and cut to `max_candidates`.

A source is cut off at its own deadline or `merge_ms` before the stage's, whichever comes first,
so the stage merges what arrived in time. Each finished source is recorded in the request's
`SourceRun` as it lands: should the stage itself be cut off (its whole deadline spent, as when
the process stalls), `CandidateStage.salvage` still merges the sources that finished, and
reports the rest as cut off.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

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
from app.deadlines import Fault, Outcome, run_within
from app.domain import (
    Candidates,
    HitTable,
    RecommendationRequest,
    StageReport,
    StageStatus,
    UserState,
)
from app.items import ItemCatalog
from app.sorting import runs, stable_order


class CandidatesConfig(BaseModel):
    max_candidates: int = Field(1000, ge=1, le=10_000, description="Candidates passed to ranking.")
    exclude_consumed: bool = Field(True, description="Drop items the user already consumed.")
    merge_ms: float = Field(
        5.0,
        ge=0,
        description="Of the stage's deadline, kept for the merge: every source is cut off at "
        "the stage deadline less this, if its own comes later.",
    )
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

    async def __call__(
        self,
        request: RecommendationRequest,
        user: UserState,
        within_ms: float | None = None,
        run: SourceRun | None = None,
    ) -> CandidateOutput:
        """The merged candidates of every source, which are cut off `merge_ms` before
        `within_ms` (the stage's deadline; default: none) if their own deadlines are later.
        `run` (default: a new one) records each source's outcome as it lands."""
        gate = ItemGate.for_request(request, user, self.items, self.config.exclude_consumed)
        given = SourceInput(request, user, gate)
        run = run if run is not None else SourceRun()
        run.started = time.perf_counter()
        cutoff = None if within_ms is None else max(0.0, within_ms - self.config.merge_ms)

        async def call(source: CandidateSource) -> None:
            deadline = source.config.deadline_ms
            if cutoff is not None:
                deadline = min(deadline, cutoff)
            outcome = await run_within(source.name, deadline, lambda: source(given), self.faults)
            run.outcomes[source.name] = outcome

        await asyncio.gather(*(call(s) for s in self.sources))
        return self.salvage(run)

    def salvage(self, run: SourceRun) -> CandidateOutput:
        """The merge of the sources `run` saw finish; the others are reported as cut off by
        the stage's deadline (none are reported if the stage never started them)."""
        reports = []
        results: list[tuple[str, SourceResult]] = []
        for source in self.sources if run.started is not None else []:
            outcome = run.outcomes.get(source.name)
            if outcome is None:
                reports.append(run.cut_off(source.name))
                continue
            result = outcome.value
            if result is not None and result.skipped is None:
                results.append((source.name, result))
            status = outcome.status
            detail = outcome.error
            if result is not None and result.skipped is not None:
                status, detail = StageStatus.SKIPPED, result.skipped
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


@dataclass
class SourceRun:
    """One request's sources as far as they got: each outcome is recorded as it lands."""

    outcomes: dict[str, Outcome[SourceResult]] = field(default_factory=dict)
    started: float | None = None  # time.perf_counter() when the sources were started

    def cut_off(self, name: str) -> StageReport:
        """The report of a source still running when the stage was cut off."""
        ms = 0.0 if self.started is None else (time.perf_counter() - self.started) * 1000
        detail = f"{name} was cut off with the candidates stage after {ms:.0f} ms"
        return StageReport(f"source:{name}", ms, StageStatus.TIMEOUT, 0, 0, detail)


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
    lengths = np.array([len(r) for _, r in results])
    firsts = np.cumsum(lengths) - lengths  # where each source's hits start in `found`
    source = np.repeat(np.arange(len(results)), lengths)[by_row]
    anchors = np.full(len(found), -1, dtype=np.int64)
    for (_, r), first in zip(results, firsts.tolist(), strict=True):
        if r.anchors is not None:
            anchors[first : first + len(r)] = r.anchors
    union = HitTable(
        [name for name, _ in results],
        row[by_row],
        source,
        by_row - firsts[source] + 1,  # each hit's rank in its source, from 1
        np.concatenate([np.asarray(r.scores, dtype=np.float64) for _, r in results])[by_row],
        anchors[by_row],
    )
    fused = (fusion or ReciprocalRank()).scores(union, len(unique))
    kept = np.argsort(-fused, kind="stable")[:limit]
    return Candidates(unique[appearance], table=union).take(kept)
