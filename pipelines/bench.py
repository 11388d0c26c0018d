"""In-process latency of the served pipeline: per-stage percentiles over many requests.

The first piece of `shortlist bench` (the scale benchmark adds catalog generation, ANN recall
against brute force and HTTP load). Requests run one after another, after a warm-up, for a seeded
sample of known users (and a share of unknown ones), explain off unless asked. `cold`: the
serving version's files are dropped from the page cache first (as after a reboot, or a build
whose last steps filled it with other files) and the requests are measured from the first one
(after the few a version answers for itself before it serves, as a server's are: the load time
includes them).
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.domain import RecommendationRequest, StageStatus
from app.engine import Engine
from app.pipeline import FAULT_POINTS
from app.settings import Settings
from app.store import CatalogRoot
from pipelines.machine_speed import reference

WARMUP = 20
UNKNOWN_SHARE = 0.1


def drop_cached(path: Path) -> int:
    """Ask the kernel to drop a file, or every file under a directory, from the page cache
    (written back first; the pages some process maps stay); the bytes of the files asked about."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    asked = 0
    for file in files:
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages (a build just finished) are not dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            asked += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return asked


def _major_faults() -> int:
    """Page faults of this process that read from disk, so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_majflt


async def _measure(
    settings: Settings, requests: int, explain: bool, seed: int, cold: bool = False
) -> dict[str, Any]:
    warmup = 0 if cold else WARMUP
    dropped = drop_cached(CatalogRoot(settings.db_path).open().path) if cold else 0
    before_load, load_started = _major_faults(), time.perf_counter()
    engine = await Engine.start(settings)
    load_s = time.perf_counter() - load_started
    load_faults = _major_faults() - before_load
    users = engine.current.runtime.users.index
    # asked when the catalog's events end, as a live catalog is: recent releases are then
    # fresh (asked years later, the fresh source would find nothing and cost nothing)
    at = datetime.fromtimestamp(engine.current.runtime.manifest.reference_time, tz=UTC)
    rng = np.random.default_rng(seed)
    picked = [str(users[i]) for i in rng.integers(0, len(users), size=requests + warmup)]
    for n in range(0, len(picked), int(1 / UNKNOWN_SHARE)):
        picked[n] = f"bench-unknown-{n}"
    stages: dict[str, list[float]] = {}
    totals: list[float] = []
    cpu: list[float] = []  # the process's CPU time per request, every thread (CatBoost's too)
    degraded = 0
    degraded_by: dict[str, int] = {}  # "stage: STATUS" of what a degraded answer missed
    for n, user in enumerate(picked):
        if n == warmup:
            before_answers = _major_faults()  # counted from the first measured request
        request = RecommendationRequest(user_id=user, count=30, at=at, explain=explain)
        started, cpu_started = time.perf_counter(), time.process_time()
        result = await engine.recommend(request)
        elapsed = (time.perf_counter() - started) * 1000
        used = (time.process_time() - cpu_started) * 1000
        if n < warmup:
            continue
        totals.append(elapsed)
        cpu.append(used)
        degraded += result.degraded
        for report in result.stages:
            if result.degraded and report.status in (StageStatus.TIMEOUT, StageStatus.ERROR):
                key = f"{report.name}: {report.status.value}"
                degraded_by[key] = degraded_by.get(key, 0) + 1
            stages.setdefault(report.name, []).append(report.ms)
    answer_faults = _major_faults() - before_answers
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
        "cold": cold,
        "dropped_bytes": dropped,
        "load_s": round(load_s, 2),
        "major_faults": {"load": load_faults, "answers": answer_faults},
        "degraded": degraded,
        "degraded_by": degraded_by,
        "total": summary(totals),
        "cpu": summary(cpu),
        "stages": {name: summary(values) for name, values in stages.items()},
    }


def stage_latency(
    db: Path, requests: int = 500, explain: bool = False, seed: int = 0, cold: bool = False
) -> dict[str, Any]:
    machine = reference()  # timed once a report, before the engine loads (not per fault)
    report = asyncio.run(_measure(Settings(db_path=db), requests, explain, seed, cold))
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
    if "load_s" in report:
        faults = report["major_faults"]
        start = (
            f"Cold: {report['dropped_bytes'] / 2**20:,.0f} MiB of the version's files dropped "
            "from the page cache first, every request measured. "
            if report["cold"]
            else ""
        )
        lines[1:1] = [
            "",
            f"{start}Loaded in {report['load_s']} s; page faults read from disk: "
            f"{faults['load']:,} loading, {faults['answers']:,} answering.",
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
