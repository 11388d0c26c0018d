"""The scale benchmark end to end at a tiny size: outputs exist and are well-formed.

Speed is what the benchmark reports, never what a test asserts.
"""

import itertools
import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipelines.bench_http import knee, lua_script, parse_wrk
from pipelines.bench_report import PNG
from pipelines.bench_scale import scale_bench

WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:8000
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    95.12ms   20.01ms 310.00ms   80.00%
  Latency Distribution
     50%   90.50ms
     75%  101.00ms
     90%  120.25ms
     99%    1.20s
  300 requests in 2.00s, 1.20MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:    150.25
Transfer/sec:    600.00KB
Degraded answers: 30
GraphQL error answers: 2
"""


def test_parse_wrk_reads_rate_percentiles_and_errors() -> None:
    row = parse_wrk(WRK_OUTPUT)
    assert row["requests_per_s"] == 150.25
    assert row["p50_ms"] == 90.5 and row["p90_ms"] == 120.25 and row["p99_ms"] == 1200.0
    assert row["requests"] == 300 and row["non_2xx"] == 4 and row["socket_errors"] == 3
    assert row["degraded_share"] == 0.1 and row["graphql_errors"] == 2


def test_knee_is_the_fewest_connections_near_the_best_throughput() -> None:
    rows = [
        {"connections": 1, "requests_per_s": 40.0},
        {"connections": 4, "requests_per_s": 95.0},
        {"connections": 8, "requests_per_s": 100.0},
        {"connections": 16, "requests_per_s": 98.0},
    ]
    assert knee(rows) == 4
    assert knee([]) is None


def test_the_knee_ignores_levels_answered_from_fallbacks() -> None:
    """More requests/s from degraded (cheaper) answers is not capacity."""
    rows = [
        {"connections": 1, "requests_per_s": 50.0, "degraded_share": 0.0},
        {"connections": 4, "requests_per_s": 53.0, "degraded_share": 0.0},
        {"connections": 16, "requests_per_s": 69.0, "degraded_share": 0.96},
        {"connections": 64, "requests_per_s": 92.0, "degraded_share": 1.0},
    ]
    assert knee(rows) == 1


def test_lua_script_sends_each_user_as_a_graphql_variable() -> None:
    script = lua_script(["u1", 'we"ird'], "2020-03-01T12:00:00+00:00")
    assert '"u1", "we\\"ird"' in script
    assert '"at": "2020-03-01T12:00:00+00:00"' in script and "context: {at: $at}" in script
    assert "recommendations(userId: $u" in script and 'wrk.method = "POST"' in script


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (Debian package wrk)")
def test_wrk_threads_ask_for_different_users_at_a_time(tmp_path: Path) -> None:
    """Walked in step, two threads would ask for each user twice at once: the second answer
    would come from the first one's caches."""
    asked: list[tuple[int, str]] = []  # (client port, user)

    class Recorder(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            asked.append((self.client_address[1], body["variables"]["u"]))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    users = [f"u{i}" for i in range(1000)]
    script = tmp_path / "r.lua"
    script.write_text(lua_script(users, "2020-03-01T12:00:00+00:00"))
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        subprocess.run(
            ["wrk", "-t2", "-c2", "-d1s", "-s", str(script), url], check=True, capture_output=True
        )
    finally:
        server.shutdown()
        server.server_close()
    by_connection: dict[int, list[int]] = {}
    for port, user in asked:
        by_connection.setdefault(port, []).append(users.index(user))
    assert len(by_connection) == 2
    one, other = by_connection.values()
    assert len(one) > 10 and len(other) > 10
    # each walks the list in order; their n-th requests are half the list apart (give or take
    # the request wrk builds before it connects)
    steps = [b - a for walk in (one, other) for a, b in itertools.pairwise(walk)]
    assert all(step % len(users) == 1 for step in steps)
    apart = [abs(a - b) % len(users) for a, b in zip(one, other, strict=False)]
    assert all(len(users) // 2 - 2 <= d <= len(users) // 2 + 2 for d in apart)


@pytest.fixture
def quick_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """A small ranker, so the child build of a tiny catalog takes seconds."""
    monkeypatch.setenv("SHORTLIST_RANKER_MAX_USERS", "100")
    monkeypatch.setenv("SHORTLIST_RANKER_ITERATIONS", "30")
    monkeypatch.setenv("SHORTLIST_RANKER_NEGATIVES", "50")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_scale_bench_at_a_tiny_size_writes_json_markdown_and_png(
    tmp_path: Path, quick_build: None
) -> None:
    out = tmp_path / "report"
    report = scale_bench(
        tmp_path / "work",
        out,
        items=1500,
        users=200,
        requests=20,
        ann_queries=15,
        http_seconds=1,
        concurrency=(1, 2),
        seed=3,
    )
    written = json.loads((out / "bench.json").read_text())
    assert written["catalog"]["counts"]["items"] == 1500
    catalog = written["catalog"]
    assert catalog["generate"]["peak_rss_mib"] > 0 and catalog["build"]["seconds"] > 0
    steps = {s["name"] for s in catalog["build_steps"]}
    assert {"ingest", "cf", "write", "index", "total"} <= steps
    for run in (written["latency"], written["latency_explain"], written["latency_cold"]):
        assert run["requests"] == 20
        assert {"candidates", "ranking", "reranking"} <= set(run["stages"])
        assert 0 <= run["total"]["p50_ms"] <= run["total"]["p99_ms"]
    assert written["latency_explain"]["explain"] is True
    assert written["latency_cold"]["cold"] is True and not written["latency"]["cold"]
    assert set(written["ann"]["columns"]) == {"cf_vector", "content_vector"}
    for column in written["ann"]["columns"].values():
        assert 0.0 <= column["recall@1000"] <= 1.0
        assert 0.0 <= column["recall@1000_min"] <= column["recall@1000"]
        assert column["ann"]["p50_ms"] > 0 and column["exact_numpy"]["p50_ms"] >= 0
    http = written["http"]
    if shutil.which("wrk") is None:
        assert http["available"] is False and "wrk" in http["reason"]
    else:
        assert [r["connections"] for r in http["rows"]] == [1, 2]
        assert all(r["requests"] > 0 and r["non_2xx"] == 0 for r in http["rows"])
        assert all(r["graphql_errors"] == 0 for r in http["rows"])  # dated answers, not errors
        assert all(r["server_cpu_ms_per_request"] > 0 for r in http["rows"])
        assert all(0 <= r["degraded_share"] <= 1 for r in http["rows"])
        # which level is the knee depends on the machine's load (the known answers are above)
        assert http["knee_connections"] == knee(http["rows"])
        workers = written["http_workers"]  # the same load on `serve --workers 2` and a Redis
        assert workers["workers"] == 2 and [r["connections"] for r in workers["rows"]] == [1, 2]
        assert all(r["requests"] > 0 and r["non_2xx"] == 0 for r in workers["rows"])
        assert all(r["graphql_errors"] == 0 for r in workers["rows"])
        assert all(r["redis_cpu_ms_per_request"] >= 0 for r in workers["rows"])
        assert "2 worker processes" in (out / "bench.md").read_text()
    assert (out / PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "bench.md").read_text()
    assert "| cf_vector |" in markdown and "Build steps" in markdown
    # the cold run is shown first, as it runs first
    runs = markdown.split(" sequential requests, ")[1:]
    assert len(runs) == 3 and "Cold: " in runs[0] and "Cold: " not in runs[1] + runs[2]
    assert report["catalog"] == written["catalog"]
    # A second run reuses the generated source and the built catalog.
    again = scale_bench(
        tmp_path / "work", out, items=1500, users=200, requests=5, ann_queries=5,
        http_seconds=1, concurrency=(), seed=3,
    )  # fmt: skip
    assert "generate" not in again["catalog"] and "build" not in again["catalog"]
    assert again["http"]["available"] is False
    assert "Not measured" in (out / "bench.md").read_text()
