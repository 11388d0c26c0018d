"""Load with a fault: a real `shortlist serve`, many clients mixing queries and recordEvents.

On a scratch catalog root (the serving version of `db` linked in, its own empty live database,
so the measured catalog is never written to), a real uvicorn server starts with default
settings, an API key and one injected fault (e.g. the `cf_ann` source delayed past its
deadline). `clients` concurrent clients then run for `seconds`, each a loop of
recommendations queries and, with probability `events_share`, recordEvents calls of 1 to 5
events. Every call's events carry the call's own session id, so afterwards each acknowledged
event can be looked for in the live events table: once the server was stopped (SIGTERM), and
again after it was started and stopped once more (a restart replays the log; the table must
be unchanged). Counted: status codes, 5xx, GraphQL errors by code, transport errors,
degraded answers, latencies, events acknowledged, events found, acknowledged events lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import lancedb
import numpy as np
import pyarrow.compute as pc

from app.store import CatalogRoot
from pipelines.bench_realtime import scratch_root

KEY = "load-test-key"
SESSION = "load-"
RECS = """query($u: ID!) { recommendations(userId: $u, count: 30) {
  degraded items { item { id } } } }"""
RECORD = """mutation($e: [EventInput!]!) {
  recordEvents(events: $e) { accepted rejected { index code } } }"""
USER = "query($u: ID!) { user(id: $u) { eventCount } }"
DEFAULT_FAULT = {"cf_ann": {"delay_ms": 500}}


class Server:
    """`shortlist serve` as a subprocess on a free port."""

    def __init__(self, root: Path, faults: dict[str, Any], log: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "SHORTLIST_API_KEY": KEY, "SHORTLIST_FAULTS": json.dumps(faults)}
        command = ["-c", "from pipelines.cli import main; main()", "serve", "--db", str(root)]
        self.log = log.open("a")
        self.process = subprocess.Popen(
            [sys.executable, *command, "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise SystemExit("the server did not become ready")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)
        self.log.close()
        return int(self.process.returncode)


class Tally:
    def __init__(self) -> None:
        self.statuses: Counter[str] = Counter()
        self.codes: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.latency: dict[str, list[float]] = {"query": [], "events": []}
        self.calls: Counter[str] = Counter()
        self.degraded = 0
        self.transport_errors = 0
        self.acknowledged: dict[str, int] = {}  # session id -> events acknowledged
        self.per_user: Counter[str] = Counter()  # events acknowledged per user

    def answer(self, kind: str, response: httpx.Response, ms: float) -> dict[str, Any] | None:
        self.calls[kind] += 1
        self.statuses[str(response.status_code)] += 1
        self.latency[kind].append(ms)
        try:
            data = response.json()
        except ValueError:
            return None
        for error in data.get("errors") or []:
            self.codes[str((error.get("extensions") or {}).get("code"))] += 1
        return data.get("data")  # type: ignore[no-any-return]


async def _client(
    n: int,
    url: str,
    until: float,
    users: list[str],
    items: list[str],
    events_share: float,
    tally: Tally,
    seed: int,
) -> None:
    rng = random.Random(seed + n)
    calls = 0
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while time.monotonic() < until:
            calls += 1
            started = time.perf_counter()
            try:
                if rng.random() < events_share:
                    session = f"{SESSION}{n}-{calls}"
                    events = [
                        {
                            "userId": f"load-user-{rng.randrange(5000)}",
                            "itemId": rng.choice(items),
                            "event": rng.choice(["VIEW", "VIEW", "CLICK", "PURCHASE"]),
                            "sessionId": session,
                        }
                        for _ in range(rng.randint(1, 5))
                    ]
                    response = await client.post(
                        "/graphql",
                        json={"query": RECORD, "variables": {"e": events}},
                        headers={"x-api-key": KEY},
                    )
                    ms = (time.perf_counter() - started) * 1000
                    data = tally.answer("events", response, ms)
                    if data and data.get("recordEvents"):
                        result = data["recordEvents"]
                        tally.acknowledged[session] = int(result["accepted"])
                        tally.rejected.update(r["code"] for r in result["rejected"])
                        refused = {r["index"] for r in result["rejected"]}
                        tally.per_user.update(
                            e["userId"] for i, e in enumerate(events) if i not in refused
                        )
                else:
                    user = rng.choice(users) if rng.random() < 0.9 else f"load-new-{n}-{calls}"
                    response = await client.post(
                        "/graphql", json={"query": RECS, "variables": {"u": user}}
                    )
                    ms = (time.perf_counter() - started) * 1000
                    data = tally.answer("query", response, ms)
                    if data and data.get("recommendations"):
                        tally.degraded += bool(data["recommendations"]["degraded"])
            except httpx.TransportError:
                tally.transport_errors += 1


def _found(root: Path) -> dict[str, int]:
    """Events in the live table per session id of the load test."""
    try:
        table = lancedb.connect(str(CatalogRoot(root).live_dir)).open_table("events")
    except (ValueError, FileNotFoundError):  # no event was ever written
        return {}
    rows = table.to_arrow().select(["session_id"])
    counts = rows.group_by("session_id").aggregate([("session_id", "count")])
    sessions = counts["session_id"].to_pylist()
    numbers = pc.cast(counts["session_id_count"], "int64").to_pylist()
    return {
        s: int(c) for s, c in zip(sessions, numbers, strict=True) if s and s.startswith(SESSION)
    }


def _pct(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {f"p{q}_ms": round(float(np.percentile(values, q)), 1) for q in (50, 95, 99)} | {
        "max_ms": round(max(values), 1)
    }


def load_test(
    db: Path,
    clients: int = 50,
    seconds: float = 60.0,
    events_share: float = 0.3,
    faults: dict[str, Any] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    faults = DEFAULT_FAULT if faults is None else faults
    catalog = CatalogRoot(db).open()
    users = catalog.table("users").to_arrow().column("user_id").to_pylist()
    items = catalog.table("items").to_arrow().column("item_id").to_pylist()
    with tempfile.TemporaryDirectory(prefix="shortlist-load-") as scratch:
        root = scratch_root(db, Path(scratch))
        log = Path(scratch) / "server.log"
        server = Server(root, faults, log)
        try:
            server.wait_ready()
            tally = Tally()

            async def run() -> float:
                started = time.monotonic()
                until = started + seconds
                await asyncio.gather(
                    *(
                        _client(n, server.url, until, users, items, events_share, tally, seed)
                        for n in range(clients)
                    )
                )
                return time.monotonic() - started

            elapsed = asyncio.run(run())
        finally:
            exit_code = server.stop()
        found = _found(root)
        restarted = Server(root, faults, log)
        try:
            restarted.wait_ready()
            replayed = _replayed_users(restarted.url, tally)
        finally:
            restarted.stop()
        found_after_restart = _found(root)
        server_log = log.read_text()

    acknowledged = sum(tally.acknowledged.values())
    lost = sum(max(0, n - found.get(s, 0)) for s, n in tally.acknowledged.items())
    lost_after_restart = sum(
        max(0, n - found_after_restart.get(s, 0)) for s, n in tally.acknowledged.items()
    )
    statuses = dict(sorted(tally.statuses.items()))
    return {
        "db": str(db),
        "clients": clients,
        "seconds": round(elapsed, 1),
        "faults": faults,
        "calls": dict(tally.calls),
        "calls_per_s": round(sum(tally.calls.values()) / elapsed, 1),
        "statuses": statuses,
        "server_errors": sum(n for s, n in tally.statuses.items() if s.startswith("5")),
        "transport_errors": tally.transport_errors,
        "graphql_errors": dict(tally.codes),
        "rejected_events": dict(tally.rejected),
        "degraded_answers": tally.degraded,
        "latency": {kind: _pct(values) for kind, values in tally.latency.items()},
        "events_acknowledged": acknowledged,
        "events_found": sum(found.get(s, 0) for s in tally.acknowledged),
        "events_found_unacknowledged": sum(
            n for s, n in found.items() if s not in tally.acknowledged
        ),
        "events_lost": lost,
        "events_found_after_restart": sum(
            found_after_restart.get(s, 0) for s in tally.acknowledged
        ),
        "events_lost_after_restart": lost_after_restart,
        "users_after_restart": replayed,
        "server_exit_code": exit_code,
        "server_tracebacks": server_log.count("Traceback"),
    }


def _replayed_users(url: str, tally: Tally, sample: int = 50) -> dict[str, int]:
    """After the restart, ask for some load users: each one's event count must be the number
    of their events acknowledged before (they are new users: all their events are live)."""
    users = sorted(tally.per_user)[:sample]
    matching = 0
    for user in users:
        response = httpx.post(
            f"{url}/graphql", json={"query": USER, "variables": {"u": user}}, timeout=30
        )
        profile = (response.json().get("data") or {}).get("user") or {}
        matching += profile.get("eventCount") == tally.per_user[user]
    return {"users": len(users), "matching": matching}


def markdown(report: dict[str, Any]) -> str:
    q, e = report["latency"].get("query", {}), report["latency"].get("events", {})
    return "\n".join(
        [
            f"{report['clients']} clients for {report['seconds']} s, fault {report['faults']}: "
            f"{sum(report['calls'].values()):,} calls ({report['calls_per_s']}/s), "
            f"{report['calls'].get('query', 0):,} queries and "
            f"{report['calls'].get('events', 0):,} recordEvents",
            f"- status codes {report['statuses']}; 5xx: {report['server_errors']}; transport "
            f"errors: {report['transport_errors']}; GraphQL errors {report['graphql_errors']}",
            f"- degraded answers: {report['degraded_answers']:,}; events rejected "
            f"{report['rejected_events']}",
            f"- queries p50 {q.get('p50_ms')} ms, p95 {q.get('p95_ms')}, p99 {q.get('p99_ms')}, "
            f"max {q.get('max_ms')}; recordEvents p50 {e.get('p50_ms')} ms, p99 {e.get('p99_ms')}",
            f"- events acknowledged {report['events_acknowledged']:,}, found "
            f"{report['events_found']:,} (lost {report['events_lost']}), after a restart "
            f"{report['events_found_after_restart']:,} (lost "
            f"{report['events_lost_after_restart']}); users whose event count matched after "
            f"the restart: {report['users_after_restart']['matching']}/"
            f"{report['users_after_restart']['users']}; server exit "
            f"{report['server_exit_code']}, tracebacks in its log: {report['server_tracebacks']}",
        ]
    )
