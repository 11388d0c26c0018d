"""Warm-up: a loaded version answers sampled users' requests before it serves, never failing."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine import Engine
from app.settings import Settings
from app.warmup import warm


async def test_a_version_answers_the_sampled_users_before_it_serves(built_catalog: Path) -> None:
    loaded = await Engine.load(Settings(db_path=built_catalog, warmup_requests=0))
    users = loaded.runtime.users
    asked: list[str] = []
    recommend = loaded.pipeline.recommend

    async def counted(request, *args, **kwargs):  # type: ignore[no-untyped-def]
        asked.append(request.user_id)
        return await recommend(request, *args, **kwargs)

    loaded.pipeline.recommend = counted  # type: ignore[method-assign]
    assert await warm(loaded.pipeline, users, 12, seed=3) == 12
    assert len(set(asked)) == 12 and set(asked) <= set(users.index)
    asked.clear()
    assert await warm(loaded.pipeline, users, 12, seed=3) == 12
    assert len(asked) == 12, "seeded: the same users again"
    assert await warm(loaded.pipeline, users, 0) == 0
    assert await warm(loaded.pipeline, users, 10 * len(users)) == len(users), "at most everyone"


async def test_a_failing_warm_up_is_cut_short_and_never_raises(
    built_catalog: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loaded = await Engine.load(Settings(db_path=built_catalog, warmup_requests=0))
    calls = 0

    async def failing(request, *args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("disk went away")

    loaded.pipeline.recommend = failing  # type: ignore[method-assign]
    assert await warm(loaded.pipeline, loaded.runtime.users, 10) == 2
    assert "stopped after 2 requests: disk went away" in caplog.text


async def test_loading_a_version_warms_it_as_configured(
    built_catalog: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="shortlist.engine")
    loaded = await Engine.load(Settings(db_path=built_catalog, warmup_requests=5))
    assert f"warmed {loaded.runtime.version} with 5 requests" in caplog.text
