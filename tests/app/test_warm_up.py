"""A version answers a few requests of its own before it serves (app.engine._warm): its first
real requests do not pay the set-up done on first use, and the warm-up leaves no trace."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.deadlines import Fault
from app.domain import RecommendationRequest, RecommendationResult
from app.engine import Engine
from app.pipeline import Pipeline
from app.settings import Settings

Asked = list[tuple[str, bool]]


def _recording(monkeypatch: pytest.MonkeyPatch, fail: list[bool]) -> Asked:
    """Record every request the pipeline answers (user, explain); raise while `fail[0]`."""
    asked: Asked = []
    original = Pipeline.recommend

    async def recommend(
        self: Pipeline, request: RecommendationRequest, *args: Any, **kwargs: Any
    ) -> RecommendationResult:
        asked.append((request.user_id, request.explain))
        if fail[0]:
            raise RuntimeError("the ranker's file is unreadable")
        return await original(self, request, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "recommend", recommend)
    return asked


async def test_a_version_answers_two_known_users_and_an_unknown_one_before_it_serves(
    built_catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _recording(monkeypatch, [False])
    engine = await Engine.start(Settings(db_path=built_catalog), live=False)
    try:
        users = engine.current.runtime.users.index
        first, middle = str(users[0]), str(users[len(users) // 2])
        assert asked == [(first, False), (middle, True), ("shortlist-warm-up", False)]
        # nothing recorded: the users' cached states are left for real requests to fill
        version = engine.current.runtime.version
        assert await engine.caches.local.get(f"user:{version}:{first}") is None
        seen: list[RecommendationResult] = []
        engine.observers.append(seen.append)
        at = datetime.fromtimestamp(engine.current.runtime.manifest.reference_time, tz=UTC)
        result = await engine.recommend(RecommendationRequest(first, 10, at))
        assert seen == [result] and len(asked) == 4
    finally:
        await engine.close()


async def test_a_failing_warm_up_is_logged_and_the_version_still_serves(
    built_catalog: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fail = [True]
    asked = _recording(monkeypatch, fail)
    with caplog.at_level(logging.WARNING, logger="shortlist.engine"):
        engine = await Engine.start(Settings(db_path=built_catalog), live=False)
    try:
        assert len(asked) == 1  # the first failure ends the warm-up
        assert "warming up" in caplog.text and "the ranker's file is unreadable" in caplog.text
        fail[0] = False
        user = str(engine.current.runtime.users.index[0])
        at = datetime.fromtimestamp(engine.current.runtime.manifest.reference_time, tz=UTC)
        result = await engine.recommend(RecommendationRequest(user, 10, at))
        assert len(result.picks) == 10 and not result.degraded
    finally:
        await engine.close()


async def test_a_catalog_served_with_injected_faults_is_not_warmed(
    built_catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test's injected delays and failures belong to its own requests."""
    asked = _recording(monkeypatch, [False])
    settings = Settings(db_path=built_catalog, faults={"ranking": Fault(delay_ms=1)})
    engine = await Engine.start(settings, live=False)
    await engine.close()
    assert asked == []
