"""The request path, assembled in one place: candidates -> ranking -> reranking.

`Pipeline.assemble(settings, runtime)` builds the three stages from settings; `recommend` runs
them under the request budget. Each stage has its own deadline (data in PipelineConfig) and a
fallback, so a late or failing stage degrades the answer instead of failing it:

    user_state  the batch profile with the live overlay (and CF fold-in) laid over it;
                fallback: the overlay without a batch history still being read
    candidates  sources run concurrently, each under its own deadline (and cut off just before
                the stage's); a late source is dropped; if the stage itself is cut off, the
                sources that had finished are merged; if it fails or nothing finished, the
                popular list stands in
    ranking     CatBoost over features.assemble; fallback: stage-1 (fused) order
    reranking   the configured rules; fallback: the minimal rules (consumed, dismissed, series)

Every stage and source reports its time, status and counts in `RecommendationResult.stages`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from pydantic import BaseModel, Field

from app.candidates import (
    CandidateOutput,
    CandidatesConfig,
    CandidateStage,
    SourceRun,
    merge,
)
from app.candidates.ann import FAULT_POINTS as ANN_FAULT_POINTS
from app.candidates.base import ItemGate, SourceInput
from app.candidates.sources import (
    CfAnn,
    ContentAnn,
    Ease,
    Exploration,
    Fresh,
    ItemKnn,
    ItemToItem,
    Popular,
)
from app.candidates.sources.popular import TrendingSignal
from app.deadlines import Fault, run_within
from app.domain import (
    Candidates,
    Pick,
    Ranked,
    RecommendationRequest,
    RecommendationResult,
    StageReport,
    StageStatus,
    UserState,
)
from app.ranking import Ranker, RankingConfig
from app.realtime.event_log import APPEND_FAULT
from app.realtime.fold_in import HISTORY_FAULT
from app.reranking import RerankConfig, Reranker
from app.runtime import Runtime

STAGES = ("candidates", "ranking", "reranking")
USER_STATE = "user_state"
SOURCES = (CfAnn, ContentAnn, ItemToItem, ItemKnn, Ease, Fresh, Popular, Exploration)
# Where SHORTLIST_FAULTS may inject a delay or failure (tests only): the user-state step, the
# stages, the candidate sources, and the store calls (LanceDB ANN searches per vector column, the
# live event log's append, the read of a user's batch history for the CF fold-in).
FAULT_POINTS = (
    USER_STATE,
    *STAGES,
    *(source.name for source in SOURCES),
    *ANN_FAULT_POINTS,
    APPEND_FAULT,
    HISTORY_FAULT,
)
UserLoader = Callable[[], Awaitable[UserState]]


class PipelineConfig(BaseModel):
    budget_ms: float = Field(
        200.0,
        gt=0,
        description="Whole-request deadline, from arrival (a wait in the queue counts).",
    )
    in_flight: int = Field(
        2,
        ge=1,
        le=1024,
        description="Requests one process runs the pipeline for at once; the others wait their "
        "turn (the `queue` stage) instead of slowing every running one past its deadlines.",
    )
    user_state_ms: float = Field(
        30.0,
        gt=0,
        description="Deadline of the user's state (live overlay, CF fold-in); late: the "
        "overlay without a batch history still being read.",
    )
    candidates_ms: float = Field(80.0, gt=0, description="Stage 1 deadline.")
    ranking_ms: float = Field(60.0, gt=0, description="Stage 2 deadline.")
    reranking_ms: float = Field(30.0, gt=0, description="Stage 3 deadline.")
    candidates: CandidatesConfig = Field(default_factory=CandidatesConfig)
    ranking: RankingConfig = Field(default_factory=RankingConfig)
    reranking: RerankConfig = Field(default_factory=RerankConfig)


class Pipeline:
    def __init__(
        self,
        config: PipelineConfig,
        runtime: Runtime,
        candidates: CandidateStage,
        ranking: Ranker,
        reranking: Reranker,
        faults: dict[str, Fault],
        fallback: Popular,
    ) -> None:
        self.config = config
        self.fallback = fallback  # stage 1's fallback: popular items, enabled as a source or not
        self.runtime = runtime
        self.candidates = candidates
        self.ranking = ranking
        self.reranking = reranking
        self.faults = faults

    @classmethod
    def assemble(
        cls,
        config: PipelineConfig,
        runtime: Runtime,
        faults: dict[str, Fault] | None = None,
        trending: TrendingSignal | None = None,
    ) -> Pipeline:
        """The request path on `runtime`; `trending` (live state) reorders the popular source."""
        items, c = runtime.items, config.candidates
        popular = Popular(c.popular, items, trending)
        sources = [  # one of each of SOURCES
            CfAnn(c.cf_ann, runtime.cf_index),
            ContentAnn(c.content_ann, runtime.content_index),
            ItemToItem(c.item_to_item, items, runtime.cf_index, runtime.content_index),
            ItemKnn(c.item_knn, runtime.relations.get("item_knn")),
            Ease(c.ease, runtime.relations.get("ease")),
            Fresh(c.fresh, items, runtime.content_index.memory),
            popular,
            Exploration(c.exploration, items, runtime.content_index.memory),
        ]
        faults = faults or {}
        return cls(
            config,
            runtime,
            CandidateStage(c, sources, items, faults, runtime.fusion),  # type: ignore[arg-type]
            Ranker(
                config.ranking, items, runtime.ranker_model, runtime.relations, runtime.explainer
            ),
            Reranker(config.reranking, items),
            faults,
            popular,
        )

    def user_state(self, user_id: str) -> UserState:
        return self.runtime.users.state(user_id)

    async def recommend(
        self,
        request: RecommendationRequest,
        user: UserState | None = None,
        *,
        load_user: UserLoader | None = None,
        fallback_user: Callable[[], UserState] | None = None,
        arrived: float | None = None,
        queued: StageReport | None = None,
    ) -> RecommendationResult:
        """Recommendations for `user` (default: the batch profile), or for the state `load_user`
        produces under the user-state deadline; if it is late or fails, `fallback_user`'s
        (default: the batch profile). The budget counts from `arrived` (`time.perf_counter()`
        when the request came in; default: now); `queued` reports its wait for admission."""
        started = time.perf_counter() if arrived is None else arrived

        def remaining(stage_ms: float) -> float:
            left = self.config.budget_ms - (time.perf_counter() - started) * 1000
            return max(0.0, min(stage_ms, left))

        user_report: list[StageReport] = []
        if user is None and load_user is not None:
            loaded = await run_within(
                USER_STATE, remaining(self.config.user_state_ms), load_user, self.faults
            )
            user = loaded.value
            if user is None and fallback_user is not None:
                user = fallback_user()
            user_report.append(
                StageReport(USER_STATE, loaded.ms, loaded.status, 0, 1, loaded.error)
            )
        user = user or self.user_state(request.user_id)

        # Stage 1: if the stage is cut off, the sources that finished are still merged
        within = remaining(self.config.candidates_ms)
        run = SourceRun()
        stage1 = await run_within(
            "candidates",
            within,
            lambda: self.candidates(request, user, within, run),
            self.faults,
        )
        output = stage1.value
        if output is None and stage1.status is StageStatus.TIMEOUT:
            output = self.candidates.salvage(run)
        candidates = output.candidates if output is not None else Candidates.empty()
        source_reports = output.sources if output is not None else []
        if stage1.value is None and not len(candidates):
            candidates = await self._popular_fallback(request, user)
        reports = [
            StageReport("candidates", stage1.ms, stage1.status, 0, len(candidates), stage1.error)
        ]

        # Stage 2
        stage2 = await run_within(
            "ranking",
            remaining(self.config.ranking_ms),
            lambda: self.ranking(request, user, candidates),
            self.faults,
        )
        ranked: Ranked = (
            stage2.value if stage2.value is not None else self.ranking.fallback(candidates)
        )
        status2, detail2 = stage2.status, stage2.error
        if stage2.status is StageStatus.OK and ranked.ranker_scores is None:
            status2, detail2 = StageStatus.SKIPPED, "no ranker model: stage-1 order"
        reports.append(
            StageReport("ranking", stage2.ms, status2, len(candidates), len(ranked), detail2)
        )

        # Stage 3
        async def rerank() -> list[Pick]:
            return await self.reranking(request, user, ranked)

        stage3 = await run_within(
            "reranking", remaining(self.config.reranking_ms), rerank, self.faults
        )
        picks = (
            stage3.value
            if stage3.value is not None
            else self.reranking.minimal(request, user, ranked)
        )
        reports.append(
            StageReport(
                "reranking", stage3.ms, stage3.status, len(ranked), len(picks), stage3.error
            )
        )

        if request.explain:
            self._explain(picks, ranked)
        reports += user_report + ([queued] if queued is not None else []) + source_reports
        degraded = any(r.status in (StageStatus.TIMEOUT, StageStatus.ERROR) for r in reports)
        return RecommendationResult(
            picks=picks,
            stages=reports,
            degraded=degraded,
            request_id=request.request_id,
            model_version=self.runtime.version,
        )

    async def _popular_fallback(
        self, request: RecommendationRequest, user: UserState
    ) -> Candidates:
        gate = ItemGate.for_request(request, user, self.runtime.items, True)
        result = await self.fallback(SourceInput(request, user, gate))
        return merge([(self.fallback.name, result)], self.config.candidates.max_candidates)

    def _explain(self, picks: list[Pick], ranked: Ranked) -> None:
        if ranked.features is None or not picks:
            return
        position = {int(item): row for row, item in enumerate(ranked.items)}
        rows = [position[p.item] for p in picks if p.item in position]
        contributions = self.ranking.contributions(ranked.features[rows])
        for pick, values in zip(
            (p for p in picks if p.item in position), contributions, strict=True
        ):
            pick.contributions = values


__all__ = ["FAULT_POINTS", "STAGES", "CandidateOutput", "Pipeline", "PipelineConfig"]
