"""`shortlist bench --scale`: generate, build and measure a catalog of a given size.

1. generate (`shortlist generate --with-vectors`) and build (`shortlist build`), each as a child
   process, timed, with its peak RSS from the kernel (wait4's ru_maxrss); the build's time per
   step comes from the version's manifest. Either is skipped when its output already exists.
2. (a) per-stage latency in-process over `requests` sequential requests, explain off and on;
   (b) ANN recall@k and speed against exact numpy search per vector column (`bench_ann`);
   (c) HTTP load with wrk at several concurrencies against a real server (`bench_http`).
3. Writes bench.json, bench.md and latency-vs-load.png into `out` (`bench_report`).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from app.settings import Settings
from app.store import CatalogRoot
from pipelines.bench import stage_latency
from pipelines.bench_ann import ann_recall
from pipelines.bench_http import CONCURRENCY, http_load
from pipelines.bench_report import write_report


def run_child(args: list[str], log: Path) -> dict[str, Any]:
    """`shortlist <args>` as a child process: wall seconds and peak RSS (MiB); raises on failure."""
    command = [sys.executable, "-c", "from pipelines.cli import main; main()", *args]
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        tail = log.read_text()[-2000:]
        raise RuntimeError(f"shortlist {args[0]} failed ({process.returncode}):\n{tail}")
    return {"seconds": round(seconds, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def _self_peak_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def prepare(
    source: Path, db: Path, items: int, users: int, seed: int, logs: Path
) -> dict[str, Any]:
    """Generate and build unless already done; what each took."""
    report: dict[str, Any] = {"items": items, "users": users, "seed": seed}
    if not (source / "events.parquet").exists():
        args = ["generate", "--items", str(items), "--users", str(users)]
        args += ["--seed", str(seed), "--out", str(source), "--with-vectors"]
        report["generate"] = run_child(args, logs / "generate.log")
    if CatalogRoot(db).current() is None:
        args = ["build", "--source", str(source), "--format", "generic", "--db", str(db)]
        report["build"] = run_child(args, logs / "build.log")
    manifest = CatalogRoot(db).open().manifest
    report["counts"] = manifest.counts
    report["build_steps"] = [
        {
            "name": s["name"],
            "seconds": round(s["seconds"], 1),
            "rows": s.get("rows", 0),
            "peak_rss_mib": s.get("peak_rss_mib", 0.0),
            "peak_anon_mib": s.get("peak_anon_mib", 0.0),
        }
        for s in manifest.steps
    ]
    report["indexes"] = {
        c: {"kind": i.kind, "params": i.params, "search": i.search, "recall": i.recall_at_k}
        for c, i in manifest.indexes.items()
    }
    return report


def scale_bench(
    work: Path,
    out: Path,
    *,
    items: int,
    users: int,
    requests: int = 1000,
    ann_queries: int = 200,
    http_seconds: float = 20.0,
    concurrency: tuple[int, ...] = CONCURRENCY,
    seed: int = 42,
    http_workers: int = 2,
) -> dict[str, Any]:
    """The whole scale benchmark on `work`/source and `work`/db; reports written into `out`."""
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    source, db = work / "source", work / "db"
    report: dict[str, Any] = {"machine": _machine()}
    report["catalog"] = prepare(source, db, items, users, seed, work)
    # first, as the first requests after a build or a reboot are served: from a page cache
    # without the version's files
    report["latency_cold"] = stage_latency(db, requests, explain=False, seed=seed, cold=True)
    report["latency"] = stage_latency(db, requests, explain=False, seed=seed)
    report["latency_explain"] = stage_latency(db, requests, explain=True, seed=seed)
    report["serving_peak_rss_mib"] = _self_peak_mib()  # the in-process engine, every run
    int8_above = Settings().content_int8_above  # as the served runs above (and the server)
    report["ann"] = ann_recall(db, ann_queries, seed=seed, content_int8_above=int8_above)
    report["http"] = http_load(db, concurrency, http_seconds, seed)
    if http_workers > 1:  # the same load on replicas on one socket (one Redis)
        report["http_workers"] = http_load(
            db, concurrency, http_seconds, seed, workers=http_workers
        )
    write_report(report, out)
    return report


def _machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load],
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def main_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2)
