"""HTTP load with wrk against a real `shortlist serve` (uvicorn) process.

A Lua script POSTs the GraphQL recommendations query (count 30, explain off) for a seeded list
of known users, a different user on every request. wrk runs for a fixed time at each number of
open connections; its own latency distribution (`--latency`) gives p50 and p99 and its summary
the requests per second and any non-2xx answers. The server runs on a scratch catalog root (the
serving version linked in, its own live database), so the measured catalog is never written to.

Each level also reports the server process's CPU time per answered request (Linux /proc: user
plus system, every thread) and the 1-minute load average when it ended: on a shared machine
wall-clock throughput is noisy, the server's CPU per request much less so. And the share of
answers that were degraded (a stage or source past its deadline, from /metrics): more
connections can raise requests/s only by answering from fallbacks, which cost less CPU too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.store import USERS, CatalogRoot
from pipelines.bench_realtime import scratch_root

CONCURRENCY = (1, 4, 8, 16, 32, 64)
QUERY = (
    "query($u: ID!) { recommendations(userId: $u, count: 30) "
    "{ degraded items { item { id } score } } }"
)
KNEE_SHARE = 0.9  # the knee: the fewest connections reaching this share of the best req/s
# ... among the levels answered at full quality: past its deadlines the server answers from
# fallbacks, which are cheaper, so requests/s there measures degraded answers, not capacity
KNEE_MAX_DEGRADED = 0.01
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}

LUA = """-- wrk: POST the recommendations query for a different user on every request
local users = {%(users)s}
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  local user = users[(n %% #users) + 1]
  local body = '{"query": %(query)s, "variables": {"u": "' .. user .. '"}}'
  return wrk.format(nil, "/graphql", nil, body)
end
"""


# The benchmark is one client: the per-client query rate limit would measure the limiter.
SERVER_ENV = {"SHORTLIST_QUERY_RATE_PER_CLIENT": "0"}


class Server:
    """`shortlist serve` on a free port, its log appended to `log`."""

    def __init__(self, root: Path, log: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        command = ["-c", "from pipelines.cli import main; main()", "serve", "--db", str(root)]
        with log.open("a") as out:
            self.process = subprocess.Popen(
                [sys.executable, *command, "--port", str(self.port)],
                env={**os.environ, **SERVER_ENV},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout_s: float = 600) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError("the server did not become ready")

    def cpu_seconds(self) -> float | None:
        """The server's CPU time so far, user plus system, all threads (Linux /proc)."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def degraded_answers(self) -> float | None:
        """How many answers the server degraded so far (its /metrics counter)."""
        try:
            text = httpx.get(f"{self.url}/metrics", timeout=10).text
        except httpx.TransportError:
            return None
        match = re.search(r"^shortlist_degraded_responses_total (\S+)", text, re.M)
        return float(match.group(1)) if match else None

    def peak_rss_mib(self) -> float | None:
        """The server's peak resident memory so far (Linux /proc), None where unknown."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        return round(int(match.group(1)) / 1024, 1) if match else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def lua_script(users: list[str]) -> str:
    quoted = ", ".join(json.dumps(u) for u in users)
    return LUA % {"users": quoted, "query": json.dumps(QUERY).replace("%", "%%")}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip()).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, p50/p90/p99 (ms), requests, non-2xx and socket errors from wrk's output."""
    found: dict[str, Any] = {}
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s*{pct}(?:\.000)?%\s+(\S+)", output, re.M)
        if match:
            found[f"p{pct}_ms"] = round(_ms(match.group(1)), 2)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
        output,
    )
    found["requests_per_s"] = float(rate.group(1)) if rate else 0.0
    found["requests"] = int(total.group(1)) if total else 0
    found["non_2xx"] = int(bad.group(1)) if bad else 0
    found["socket_errors"] = sum(int(g) for g in errors.groups()) if errors else 0
    return found


def knee(rows: list[dict[str, Any]]) -> int | None:
    """The fewest connections whose throughput reaches KNEE_SHARE of the best at full quality
    (at most KNEE_MAX_DEGRADED of the answers degraded): beyond it more load adds waiting, or
    degraded answers, not throughput."""
    measured = [
        r
        for r in rows
        if r.get("requests_per_s") and r.get("degraded_share", 0.0) <= KNEE_MAX_DEGRADED
    ]
    if not measured:
        return None
    best = max(r["requests_per_s"] for r in measured)
    return min(r["connections"] for r in measured if r["requests_per_s"] >= KNEE_SHARE * best)


def _users(db: Path, count: int, seed: int) -> list[str]:
    table = CatalogRoot(db).open().table(USERS)
    pool = table.search().select(["user_id"]).limit(None).to_arrow()["user_id"].to_pylist()
    rng = np.random.default_rng(seed)
    return [pool[i] for i in rng.choice(len(pool), size=min(count, len(pool)), replace=False)]


def http_load(
    db: Path,
    concurrency: tuple[int, ...] = CONCURRENCY,
    seconds: float = 20.0,
    seed: int = 0,
    users: int = 2000,
) -> dict[str, Any]:
    """wrk at each concurrency against a fresh server; {'available': False} without wrk."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return {
            "available": False,
            "reason": "wrk is not installed (Debian: apt-get install -y wrk); HTTP load skipped",
        }
    if not concurrency:
        return {"available": False, "reason": "no concurrency levels asked; HTTP load skipped"}
    rows: list[dict[str, Any]] = []
    peak: float | None = None
    with tempfile.TemporaryDirectory(prefix="shortlist-http-") as scratch:
        root = scratch_root(db, Path(scratch))
        script = Path(scratch) / "recommendations.lua"
        script.write_text(lua_script(_users(db, users, seed)))
        server = Server(root, Path(scratch) / "server.log")
        try:
            server.wait_ready()
            warm = [wrk, "-t1", "-c4", "-d3s", "-s", str(script), server.url]
            subprocess.run(warm, capture_output=True, text=True, check=True)
            for connections in concurrency:
                threads = str(min(2, connections))
                command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s"]
                command += ["--timeout", "10s", "--latency", "-s", str(script), server.url]
                before, degraded = server.cpu_seconds(), server.degraded_answers()
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                after, degraded_after = server.cpu_seconds(), server.degraded_answers()
                row = {"connections": connections, **parse_wrk(done.stdout)}
                if before is not None and after is not None and row["requests"]:
                    cpu_ms = 1000 * (after - before) / row["requests"]
                    row["server_cpu_ms_per_request"] = round(cpu_ms, 2)
                if degraded is not None and degraded_after is not None and row["requests"]:
                    share = (degraded_after - degraded) / row["requests"]
                    # requests wrk left unfinished at the previous level end in this window
                    row["degraded_share"] = round(min(1.0, share), 3)
                row["load_1m"] = round(os.getloadavg()[0], 2)
                rows.append(row)
            peak = server.peak_rss_mib()
        finally:
            server.stop()
    return {
        "available": True,
        "tool": "wrk",
        "seconds": seconds,
        "query": QUERY,
        "rows": rows,
        "knee_connections": knee(rows),
        "server_peak_rss_mib": peak,
        "server_env": SERVER_ENV,
    }
