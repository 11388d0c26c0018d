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

from app.domain import RecommendationRequest, StageStatus
from app.engine import Engine
from app.pipeline import FAULT_POINTS
from app.settings import Settings
from pipelines.machine_speed import reference

WARMUP = 20
UNKNOWN_SHARE = 0.1


async def _measure(settings: Settings, requests: int, explain: bool, seed: int) -> dict[str, Any]:
    engine = await Engine.start(settings)
    users = engine.current.runtime.users.index
    # asked when the catalog's events end, as a live catalog is: recent releases are then
    # fresh (asked years later, the fresh source would find nothing and cost nothing)
    at = datetime.fromtimestamp(engine.current.runtime.manifest.reference_time, tz=UTC)
    rng = np.random.default_rng(seed)
    picked = [str(users[i]) for i in rng.integers(0, len(users), size=requests + WARMUP)]
    for n in range(0, len(picked), int(1 / UNKNOWN_SHARE)):
        picked[n] = f"bench-unknown-{n}"
    stages: dict[str, list[float]] = {}
    totals: list[float] = []
    cpu: list[float] = []  # the process's CPU time per request, every thread (CatBoost's too)
    degraded = 0
    degraded_by: dict[str, int] = {}  # "stage: STATUS" of what a degraded answer missed
    for n, user in enumerate(picked):
        request = RecommendationRequest(user_id=user, count=30, at=at, explain=explain)
        started, cpu_started = time.perf_counter(), time.process_time()
        result = await engine.recommend(request)
        elapsed = (time.perf_counter() - started) * 1000
        used = (time.process_time() - cpu_started) * 1000
        if n < WARMUP:
            continue
        totals.append(elapsed)
        cpu.append(used)
        degraded += result.degraded
        for report in result.stages:
            if result.degraded and report.status in (StageStatus.TIMEOUT, StageStatus.ERROR):
                key = f"{report.name}: {report.status.value}"
                degraded_by[key] = degraded_by.get(key, 0) + 1
            stages.setdefault(report.name, []).append(report.ms)
    await engine.close()

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "p50_ms": round(float(np.percentile(values, 50)), 2),
            "p99_ms": round(float(np.percentile(values, 99)), 2),
            "mean_ms": round(float(np.mean(values)), 2),
            "max_ms": round(float(np.max(values)), 2),
        }

    return {
        "version": engine.current.runtime.version,
        "requests": requests,
        "explain": explain,
        "degraded": degraded,
        "degraded_by": degraded_by,
        "total": summary(totals),
        "cpu": summary(cpu),
        "stages": {name: summary(values) for name, values in stages.items()},
    }


def stage_latency(
    db: Path, requests: int = 500, explain: bool = False, seed: int = 0
) -> dict[str, Any]:
    machine = reference()  # timed once a report, before the engine loads (not per fault)
    report = asyncio.run(_measure(Settings(db_path=db), requests, explain, seed))
    return {**report, "machine_reference": machine}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"{report['requests']} sequential requests, count=30, explain={report['explain']}, "
        f"version {report['version']}, degraded answers: {report['degraded']}"
        + "".join(f"; {n} x {what}" for what, n in sorted(report.get("degraded_by", {}).items())),
        "",
        "| stage | p50 ms | p99 ms | mean ms | max ms |",
        "|---|---:|---:|---:|---:|",
    ]
    if "machine_reference" in report:
        ref = report["machine_reference"]
        lines[1:1] = [
            "",
            f"Machine reference (`pipelines.machine_speed`, the same fixed work every run): "
            f"Python {ref['python_ms']} ms, numpy {ref['numpy_ms']} ms.",
        ]
    rows = [("total (server-side)", report["total"])]
    if "cpu" in report:  # steadier than wall time on a shared machine
        rows.append(("CPU time of the process", report["cpu"]))
    rows += list(report["stages"].items())
    for name, v in rows:
        lines.append(f"| {name} | {v['p50_ms']} | {v['p99_ms']} | {v['mean_ms']} | {v['max_ms']} |")
    return "\n".join(lines)


# Fault points a recommendation request reaches without live events (events:history is read
# only for users with live endorsements, events:append only by recordEvents).
SWEPT = [p for p in FAULT_POINTS if not p.startswith("events:")]


def fault_sweep(
    db: Path, requests: int = 50, delay_ms: float = 5000.0, seed: int = 0
) -> dict[str, Any]:
    """The request latency with each fault point in turn delayed by `delay_ms` (default
    settings: the 200 ms budget), and how many answers said they were degraded."""
    rows: dict[str, Any] = {}
    for point in [None, *SWEPT]:
        faults = {} if point is None else {point: {"delay_ms": delay_ms}}
        report = asyncio.run(_measure(Settings(db_path=db, faults=faults), requests, False, seed))
        rows[point or "none"] = {**report["total"], "degraded": report["degraded"]}
    return {"requests": requests, "delay_ms": delay_ms, "faults": rows}


def fault_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"{report['requests']} sequential requests per fault, each fault a "
        f"{report['delay_ms']:.0f} ms delay, default settings (200 ms budget)",
        "",
        "| fault | p50 ms | p99 ms | max ms | degraded answers |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in report["faults"].items():
        lines.append(
            f"| {name} | {row['p50_ms']} | {row['p99_ms']} | {row['max_ms']} | "
            f"{row['degraded']}/{report['requests']} |"
        )
    return "\n".join(lines)
