"""HTTP load with wrk against a real `shortlist serve` (uvicorn) process, or several workers.

A Lua script POSTs the GraphQL recommendations query (count 30, explain off) for a seeded list
of known users, a different user on every request, each dated when the catalog's events end (as
the in-process bench dates them). wrk runs for a fixed time at each number of open connections;
its own latency distribution (`--latency`) gives p50 and p99 and its summary the requests per
second and any non-2xx answers. The server runs on a scratch catalog root (the serving version
linked in, its own live database), so the measured catalog is never written to.

With `workers` above 1 the server is `shortlist serve --workers N`: N replicas on one socket,
sharing a redis-server this benchmark starts (no persistence, a free port) and stops.

Each level also reports the server's CPU time per answered request (Linux /proc: user plus
system, every thread of every process of the server - and of the Redis, separately) and the
1-minute load average when it ended: on a shared machine wall-clock throughput is noisy, the
server's CPU per request much less so. And the share of answers that were degraded (a stage or
source past its deadline), counted by the Lua script in the answers wrk received: more
connections can raise requests/s only by answering from fallbacks, which cost less CPU too. The
script also counts answers carrying GraphQL errors, which must be none: an error answers fast
and would pass for speed.
"""

from __future__ import annotations

import datetime as dt
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

from app.store import USERS, CatalogRoot, CatalogVersion
from pipelines.bench_realtime import scratch_root

CONCURRENCY = (1, 4, 8, 16, 32, 64)
QUERY = (
    "query($u: ID!, $at: DateTime) { recommendations(userId: $u, count: 30, context: {at: $at}) "
    "{ degraded items { item { id } score } } }"
)
KNEE_SHARE = 0.9  # the knee: the fewest connections reaching this share of the best req/s
# ... among the levels answered at full quality: past its deadlines the server answers from
# fallbacks, which are cheaper, so requests/s there measures degraded answers, not capacity
KNEE_MAX_DEGRADED = 0.01
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}

LUA = """-- wrk: POST the recommendations query for a different user on every request
local users = {%(users)s}
local threads = {}
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
function setup(thread)
  thread:set("walk_from", #threads)
  table.insert(threads, thread)
end
function init(args)
  degraded = 0
  failed = 0
  -- the (at most two) threads walk the users from opposite halves of the list: walked in step,
  -- both would ask for the same user at the same moment and the second answer would come from
  -- what the first left in the server's caches
  n = walk_from * math.floor(#users / 2)
end
request = function()
  n = n + 1
  local user = users[(n %% #users) + 1]
  local body = '{"query": %(query)s, "variables": {"u": "' .. user .. '", "at": %(at)s}}'
  return wrk.format(nil, "/graphql", nil, body)
end
response = function(status, headers, body)
  if string.find(body, '"degraded":%%s*true') then
    degraded = degraded + 1
  end
  if string.find(body, '"errors":', 1, true) then
    failed = failed + 1
  end
end
done = function(summary, latency, requests)
  local total, errors = 0, 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("degraded")
    errors = errors + thread:get("failed")
  end
  io.write(string.format("Degraded answers: %%d\\n", total))
  io.write(string.format("GraphQL error answers: %%d\\n", errors))
end
"""


# The benchmark is one client: the per-client query rate limit would measure the limiter.
SERVER_ENV = {"SHORTLIST_QUERY_RATE_PER_CLIENT": "0"}


class Server:
    """`shortlist serve [--workers N]` on a free port, its log appended to `log`."""

    def __init__(
        self, root: Path, log: Path, workers: int = 1, env: dict[str, str] | None = None
    ) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = ["-c", "from pipelines.cli import main; main()", "serve", "--db", str(root)]
        command += ["--port", str(self.port), "--workers", str(workers)]
        with log.open("a") as out:
            self.process = subprocess.Popen(
                [sys.executable, *command],
                env={**os.environ, **SERVER_ENV, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout_s: float = 900) -> None:
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
        """The server's CPU time so far: every process of it (workers), every thread."""
        return _cpu_seconds(_process_tree(self.process.pid))

    def peak_rss_mib(self) -> float | None:
        """The server's peak resident memory so far, summed over its processes (Linux /proc)."""
        peaks = [_peak_rss_mib(pid) for pid in _process_tree(self.process.pid)]
        known = [p for p in peaks if p is not None]
        return round(sum(known), 1) if known else None

    def stop(self) -> None:
        _stop(self.process)


class Redis:
    """A private redis-server for the workers (no persistence, a free port)."""

    def __init__(self, scratch: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "HTTP load with several workers needs redis-server (Debian: apt-get install -y "
                "redis-server)"
            )
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        self.process = subprocess.Popen(
            [*command, "--appendonly", "no"],
            cwd=scratch,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("redis-server exited at start-up")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start listening") from None
                time.sleep(0.05)

    def cpu_seconds(self) -> float | None:
        return _cpu_seconds([self.process.pid])

    def stop(self) -> None:
        _stop(self.process)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _process_tree(pid: int) -> list[int]:
    """The process and its descendants (Linux /proc), those still running."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                queue += [int(child) for child in task.read_text().split()]
            except OSError:
                continue
    return found


def _cpu_seconds(pids: list[int]) -> float | None:
    total, seen = 0.0, False
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        seen = True
    return total if seen else None


def _peak_rss_mib(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else None


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def lua_script(users: list[str], at: str) -> str:
    """The wrk script: `users` in turn, every request dated `at` (ISO 8601)."""
    quoted = ", ".join(json.dumps(u) for u in users)
    query = json.dumps(QUERY).replace("%", "%%")
    return LUA % {"users": quoted, "query": query, "at": json.dumps(at).replace("%", "%%")}


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
    degraded = re.search(r"Degraded answers: (\d+)", output)
    if degraded and found["requests"]:
        found["degraded_share"] = round(int(degraded.group(1)) / found["requests"], 3)
    failed = re.search(r"GraphQL error answers: (\d+)", output)
    if failed:
        found["graphql_errors"] = int(failed.group(1))
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


def _users(version: CatalogVersion, count: int, seed: int) -> list[str]:
    table = version.table(USERS)
    pool = table.search().select(["user_id"]).limit(None).to_arrow()["user_id"].to_pylist()
    rng = np.random.default_rng(seed)
    return [pool[i] for i in rng.choice(len(pool), size=min(count, len(pool)), replace=False)]


def reference_moment(version: CatalogVersion) -> str:
    """When the version's events end, ISO 8601: the moment the requests are dated, as the
    in-process bench dates them (asked years later, the fresh source finds nothing and costs
    nothing, and the load would measure less than a live catalog's answer)."""
    return dt.datetime.fromtimestamp(version.manifest.reference_time, tz=dt.UTC).isoformat()


def http_load(
    db: Path,
    concurrency: tuple[int, ...] = CONCURRENCY,
    seconds: float = 20.0,
    seed: int = 0,
    users: int = 2000,
    workers: int = 1,
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
        version = CatalogRoot(db).open()
        script.write_text(lua_script(_users(version, users, seed), reference_moment(version)))
        redis = Redis(Path(scratch)) if workers > 1 else None
        env = {"SHORTLIST_REDIS_URL": redis.url} if redis is not None else {}
        server = Server(root, Path(scratch) / "server.log", workers, env)
        try:
            server.wait_ready()
            warm = [wrk, "-t1", "-c4", "-d3s", "-s", str(script), server.url]
            subprocess.run(warm, capture_output=True, text=True, check=True)
            for connections in concurrency:
                threads = str(min(2, connections))
                command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s"]
                command += ["--timeout", "10s", "--latency", "-s", str(script), server.url]
                before = server.cpu_seconds(), redis.cpu_seconds() if redis else None
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                after = server.cpu_seconds(), redis.cpu_seconds() if redis else None
                row = {"connections": connections, **parse_wrk(done.stdout)}
                for name, was, now in zip(("server", "redis"), before, after, strict=True):
                    if was is not None and now is not None and row["requests"]:
                        per = 1000 * (now - was) / row["requests"]
                        row[f"{name}_cpu_ms_per_request"] = round(per, 2)
                row["load_1m"] = round(os.getloadavg()[0], 2)
                rows.append(row)
            peak = server.peak_rss_mib()
        finally:
            server.stop()
            if redis is not None:
                redis.stop()
    return {
        "available": True,
        "tool": "wrk",
        "workers": workers,
        "seconds": seconds,
        "query": QUERY,
        "rows": rows,
        "knee_connections": knee(rows),
        "server_peak_rss_mib": peak,
        "server_env": SERVER_ENV,
    }
