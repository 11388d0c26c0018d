"""In-process latency of the served pipeline: per-stage percentiles over many requests.

The first piece of `shortlist bench` (the scale benchmark adds catalog generation, ANN recall
against brute force and HTTP load). Requests run one after another, after a warm-up, for a seeded
sample of known users (and a share of unknown ones), explain off unless asked.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.domain import RecommendationRequest
from app.engine import Engine
from app.settings import Settings

WARMUP = 20
UNKNOWN_SHARE = 0.1


async def _measure(settings: Settings, requests: int, explain: bool, seed: int) -> dict[str, Any]:
    engine = await Engine.start(settings)
    users = engine.current.runtime.users.index
    rng = np.random.default_rng(seed)
    picked = [str(users[i]) for i in rng.integers(0, len(users), size=requests + WARMUP)]
    for n in range(0, len(picked), int(1 / UNKNOWN_SHARE)):
        picked[n] = f"bench-unknown-{n}"
    stages: dict[str, list[float]] = {}
    totals: list[float] = []
    degraded = 0
    for n, user in enumerate(picked):
        request = RecommendationRequest(
            user_id=user, count=30, at=datetime.now(tz=UTC), explain=explain
        )
        started = time.perf_counter()
        result = await engine.recommend(request)
        elapsed = (time.perf_counter() - started) * 1000
        if n < WARMUP:
            continue
        totals.append(elapsed)
        degraded += result.degraded
        for report in result.stages:
            stages.setdefault(report.name, []).append(report.ms)
    await engine.close()

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "p50_ms": round(float(np.percentile(values, 50)), 2),
            "p99_ms": round(float(np.percentile(values, 99)), 2),
            "mean_ms": round(float(np.mean(values)), 2),
        }

    return {
        "version": engine.current.runtime.version,
        "requests": requests,
        "explain": explain,
        "degraded": degraded,
        "total": summary(totals),
        "stages": {name: summary(values) for name, values in stages.items()},
    }


def stage_latency(
    db: Path, requests: int = 500, explain: bool = False, seed: int = 0
) -> dict[str, Any]:
    return asyncio.run(_measure(Settings(db_path=db), requests, explain, seed))


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"{report['requests']} sequential requests, count=30, explain={report['explain']}, "
        f"version {report['version']}, degraded answers: {report['degraded']}",
        "",
        "| stage | p50 ms | p99 ms | mean ms |",
        "|---|---:|---:|---:|",
    ]
    rows = [("total (server-side)", report["total"]), *report["stages"].items()]
    for name, values in rows:
        lines.append(f"| {name} | {values['p50_ms']} | {values['p99_ms']} | {values['mean_ms']} |")
    return "\n".join(lines)
