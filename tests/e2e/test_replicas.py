"""Two real `shortlist serve` processes on one catalog directory and one real redis-server."""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.pipeline import SOURCES
from app.store import CatalogRoot
from tests.e2e.serve import ServeProcess, publish_copy

KEY, ADMIN = "replica-events-key", "replica-admin-key"
EVENTS = "mutation($e: [EventInput!]!) { recordEvents(events: $e) { accepted } }"
RECS = """query($u: ID!) {
  recommendations(userId: $u, count: 30) { requestId modelVersion items { item { id } } }
}"""
EVENT_COUNT = "query($u: ID!) { user(id: $u) { eventCount } }"
RELOAD = "mutation { reloadModels { modelVersion switched } }"


class Replica(ServeProcess):
    def __init__(
        self, root: Path, redis_url: str, namespace: str, log: Path, args: tuple[str, ...] = ()
    ) -> None:
        self.redis_url, self.namespace = redis_url, namespace
        # generous deadlines for every stage and source: a replica's first answers pay its cold
        # start (68-75 ms on the test catalog, 126 ms once on a busy machine, past the 60 ms
        # deadlines), and these tests are about what replicas share, not speed
        pipeline = {
            "budget_ms": 20000,
            "user_state_ms": 10000,
            "candidates_ms": 10000,
            "ranking_ms": 10000,
            "reranking_ms": 10000,
            "candidates": {source.name: {"deadline_ms": 8000} for source in SOURCES},
        }
        env = {
            "SHORTLIST_API_KEY": KEY,
            "SHORTLIST_ADMIN_KEY": ADMIN,
            "SHORTLIST_REDIS_URL": redis_url,
            "SHORTLIST_REDIS_NAMESPACE": namespace,
            "SHORTLIST_EVENTS_FSYNC": "false",
            "SHORTLIST_PIPELINE": json.dumps(pipeline),
        }
        super().__init__(root, env, log, args)

    def post(self, query: str, key: str | None = KEY, **variables: Any) -> dict[str, Any]:
        body = self.ask(query, key, 60, **variables)
        assert "errors" not in body, body
        return body["data"]  # type: ignore[no-any-return]

    def recommended(self, user: str) -> tuple[list[str], dict[str, Any]]:
        answer = self.post(RECS, u=user)["recommendations"]
        return [i["item"]["id"] for i in answer["items"]], answer

    def again(self) -> Replica:
        """A new process in this one's place (same catalog, Redis and log file)."""
        return Replica(self.root, self.redis_url, self.namespace, self.log)


@pytest.fixture(scope="module")
def replicas(
    built_catalog: Path, tmp_path_factory: pytest.TempPathFactory, redis_server: str
) -> Iterator[tuple[Path, list[Replica]]]:
    tmp = tmp_path_factory.mktemp("replicas")
    root = tmp / "shortlist.lancedb"
    shutil.copytree(built_catalog, root, ignore=shutil.ignore_patterns("live"))
    namespace = f"replicas-{time.monotonic_ns()}"
    started = [Replica(root, redis_server, namespace, tmp / f"{n}.log") for n in "ab"]
    try:
        for replica in started:
            replica.ready()
        yield root, started
    finally:
        for replica in started:
            replica.stop()


def _logged(replica: Replica, request_id: str) -> list[dict[str, Any]]:
    """The replica's JSON log lines of one request (written once the response is sent)."""
    deadline = time.monotonic() + 10
    while True:
        text = replica.log.read_text()
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        mine = [line for line in lines if line.get("request_id") == request_id]
        if mine or time.monotonic() > deadline:
            return mine
        time.sleep(0.05)


def _user(root: Path, row: int) -> str:
    return str(CatalogRoot(root).open().table("users").to_pandas()["user_id"].iloc[row])


def test_an_event_recorded_on_one_replica_is_honoured_by_the_other(
    replicas: tuple[Path, list[Replica]],
) -> None:
    root, (a, b) = replicas
    user = _user(root, 11)
    shown, _ = b.recommended(user)
    dismissed, viewed = shown[0], shown[1]
    events = [
        {"userId": user, "itemId": dismissed, "event": "DISMISS"},
        {"userId": user, "itemId": viewed, "event": "VIEW"},
    ]
    assert a.post(EVENTS, e=events)["recordEvents"]["accepted"] == 2

    after, answer = b.recommended(user)  # B's very next request
    assert dismissed not in after
    assert viewed not in after, "a viewed item counts as consumed"
    assert after, "B still recommends"

    # B's log line for that request carries the requestId it answered with, as JSON
    mine = _logged(b, answer["requestId"])
    assert [line["operation"] for line in mine] == ["recommendations"]
    assert mine[0]["degraded"] is False and mine[0]["duration_ms"] > 0

    # both replicas count a user's events once
    base = a.post(EVENT_COUNT, u=user)["user"]["eventCount"]
    assert b.post(EVENT_COUNT, u=user)["user"]["eventCount"] == base
    fresh = f"replica-newcomer-{time.monotonic_ns()}"
    views = [{"userId": fresh, "itemId": viewed, "event": "VIEW"} for _ in range(3)]
    assert b.post(EVENTS, e=views)["recordEvents"]["accepted"] == 3
    assert a.post(EVENT_COUNT, u=fresh)["user"]["eventCount"] == 3
    assert b.post(EVENT_COUNT, u=fresh)["user"]["eventCount"] == 3


def test_a_restarted_replica_replays_the_log_without_counting_twice(
    replicas: tuple[Path, list[Replica]],
) -> None:
    root, replicas_ = replicas
    a, b = replicas_
    fresh = f"replica-restart-{time.monotonic_ns()}"
    item = b.recommended(_user(root, 3))[0][0]
    b.stop()
    for _ in range(4):  # while B is down: only the log (and the feed) hold them
        views = [{"userId": fresh, "itemId": item, "event": "VIEW"}]
        assert a.post(EVENTS, e=views)["recordEvents"]["accepted"] == 1
    restarted = replicas_[1] = b.again()
    restarted.ready()
    assert restarted.post(EVENT_COUNT, u=fresh)["user"]["eventCount"] == 4
    views = [{"userId": fresh, "itemId": item, "event": "VIEW"}]
    assert a.post(EVENTS, e=views)["recordEvents"]["accepted"] == 1
    assert restarted.post(EVENT_COUNT, u=fresh)["user"]["eventCount"] == 5
    assert a.post(EVENT_COUNT, u=fresh)["user"]["eventCount"] == 5


def test_both_replicas_answer_with_the_version_reloaded_on_one(
    replicas: tuple[Path, list[Replica]],
) -> None:
    root, (a, b) = replicas
    user = _user(root, 5)
    first = a.recommended(user)[1]["modelVersion"]
    assert b.recommended(user)[1]["modelVersion"] == first

    second = "v29990101-000000-001"  # a new version appears: a copy stands in for a build
    assert publish_copy(root, second) == first

    reloaded = a.post(RELOAD, key=ADMIN)["reloadModels"]
    assert reloaded == {"modelVersion": second, "switched": True}
    # B was not told directly: it follows the version pinned in Redis before it answers
    assert b.recommended(user)[1]["modelVersion"] == second
    assert a.recommended(user)[1]["modelVersion"] == second
    assert b.ready()["modelVersion"] == second


UPSERT = "mutation($i: [ItemInput!]!) { upsertItems(items: $i) { inserted updated } }"
ITEM = "query($id: ID!) { item(id: $id) { id title } }"


class Workers(Replica):
    """`shortlist serve --workers 2`: two replicas on one socket, one supervisor."""

    def __init__(self, root: Path, redis_url: str, namespace: str, log: Path) -> None:
        super().__init__(root, redis_url, namespace, log, ("--workers", "2"))

    def by_replica(self, query: str, tries: int = 60, **variables: Any) -> dict[str, list[Any]]:
        """The query's data from fresh connections, grouped by the worker that answered (its
        /readyz `replica`, asked on the same connection): until both answered, or `tries`."""
        seen: dict[str, list[Any]] = {}
        for _ in range(tries):
            with httpx.Client(base_url=self.url, limits=httpx.Limits(max_connections=1)) as c:
                replica = c.get("/readyz", timeout=10).json()["replica"]
                body = c.post(
                    "/graphql", json={"query": query, "variables": variables}, timeout=60
                ).json()
            assert "errors" not in body, body
            seen.setdefault(replica, []).append(body["data"])
            if len(seen) == 2 and min(len(v) for v in seen.values()) >= 2:
                break
        assert len(seen) == 2, f"only {list(seen)} answered in {tries} connections"
        return seen


@pytest.fixture(scope="module")
def workers(
    built_catalog: Path, tmp_path_factory: pytest.TempPathFactory, redis_server: str
) -> Iterator[tuple[Path, Workers]]:
    tmp = tmp_path_factory.mktemp("workers")
    root = tmp / "shortlist.lancedb"
    shutil.copytree(built_catalog, root, ignore=shutil.ignore_patterns("live"))
    server = Workers(root, redis_server, f"workers-{time.monotonic_ns()}", tmp / "serve.log")
    try:
        server.ready()
        yield root, server
    finally:
        server.stop()


def test_worker_processes_share_upserted_items(
    workers: tuple[Path, Workers],
) -> None:
    _, server = workers
    fresh = f"worker-item-{time.monotonic_ns()}"
    item = {"itemId": fresh, "title": "A Film Only One Worker Embedded", "genres": ["Drama"]}
    assert server.post(UPSERT, key=ADMIN, i=[item])["upsertItems"]["inserted"] == [fresh]
    for replica, answers in server.by_replica(ITEM, id=fresh).items():
        assert all(a["item"] == {"id": fresh, "title": item["title"]} for a in answers), replica

    renamed = {**item, "title": "Renamed On One Worker"}
    assert server.post(UPSERT, key=ADMIN, i=[renamed])["upsertItems"]["updated"] == [fresh]
    for replica, answers in server.by_replica(ITEM, id=fresh).items():
        assert all(a["item"]["title"] == renamed["title"] for a in answers), replica


def test_metrics_count_every_workers_requests_whichever_answers(
    workers: tuple[Path, Workers],
) -> None:
    root, server = workers
    before = _recommendations_counted(server)
    answered = server.by_replica(RECS, u=_user(root, 3))  # fresh connections until both answer
    after = _recommendations_counted(server)
    assert set(after) == set(before) == set(answered), "/metrics asked of each worker"
    sent = sum(len(a) for a in answered.values())
    for replica in answered:
        assert after[replica] - before[replica] == sent, f"{replica} counts both workers' requests"


def _recommendations_counted(server: Workers) -> dict[str, float]:
    """shortlist_request_seconds_count for recommendations, as each worker's /metrics says."""
    counted: dict[str, float] = {}
    for _ in range(60):
        with httpx.Client(base_url=server.url, limits=httpx.Limits(max_connections=1)) as c:
            replica = c.get("/readyz", timeout=10).json()["replica"]
            text = c.get("/metrics", timeout=10).text
        line = next(
            (
                x
                for x in text.splitlines()
                if x.startswith('shortlist_request_seconds_count{operation="recommendations"}')
            ),
            None,
        )
        counted[replica] = float(line.rsplit(" ", 1)[1]) if line else 0.0
        if len(counted) == 2:
            return counted
    raise AssertionError(f"only {list(counted)} answered /metrics")


def test_connections_opened_at_once_are_dealt_to_both_workers(
    workers: tuple[Path, Workers],
) -> None:
    """A client opening its connections in a burst (a pool, a load balancer) and keeping them
    gets both workers: without turns, the first worker to wake takes them all."""
    _, server = workers
    server.by_replica(EVENT_COUNT, u="nobody")  # both started (a worker loading has no turn)
    address = ("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
    kept = [socket.create_connection(address, timeout=30) for _ in range(8)]
    try:
        replicas = collections.Counter(_replica(connection) for connection in kept)
    finally:
        for connection in kept:
            connection.close()
    assert len(replicas) == 2 and min(replicas.values()) >= 3, replicas


def test_a_worker_that_stopped_accepting_is_not_waited_for(
    workers: tuple[Path, Workers],
) -> None:
    """One worker stopped (SIGSTOP: alive, not accepting) with fewer connections than the other:
    new connections are still answered, by the other, though it is past its turn."""
    _, server = workers
    both = set(server.by_replica(EVENT_COUNT, u="nobody"))  # both started
    time.sleep(0.3)  # each has published its count (0) since those connections closed
    address = ("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
    with socket.create_connection(address, timeout=30) as held:  # 1 here, 0 there
        serving = _replica(held)
        (other,) = both - {serving}
        stopped = int(other.rsplit(":", 1)[1])
        os.kill(stopped, signal.SIGSTOP)
        try:
            # answered within 3 s: before uvicorn's keep-alive timeout (5 s) closes `held` and
            # gives the serving worker its turn back anyway
            kept = [socket.create_connection(address, timeout=3) for _ in range(3)]
            try:
                replicas = {_replica(connection) for connection in kept}
            finally:
                for connection in kept:
                    connection.close()
        finally:
            os.kill(stopped, signal.SIGCONT)
    assert replicas == {serving}


def _replica(connection: socket.socket) -> str:
    """/readyz's `replica` on a kept-open connection (HTTP/1.1 by hand: no pool to choose)."""
    connection.sendall(b"GET /readyz HTTP/1.1\r\nHost: shortlist\r\n\r\n")
    answer = b""
    while b"}" not in answer:
        chunk = connection.recv(4096)
        assert chunk, "the connection closed before /readyz answered"
        answer += chunk
    body = answer.split(b"\r\n\r\n", 1)[1]
    return str(json.loads(body[body.index(b"{") : body.rindex(b"}") + 1])["replica"])


def test_sighup_to_the_supervisor_switches_every_worker(workers: tuple[Path, Workers]) -> None:
    root, server = workers
    second = "v29990202-000000-002"  # a copy stands in for a build
    publish_copy(root, second)
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 120
    versions: set[str] = set()
    while time.monotonic() < deadline:
        versions = {
            a[0]["recommendations"]["modelVersion"]
            for a in server.by_replica(RECS, u=_user(root, 2)).values()
        }
        if versions == {second}:
            break
        time.sleep(0.5)
    assert versions == {second}, "both workers serve the new version, none restarted on the old"
    assert server.process.poll() is None


def test_workers_end_with_a_supervisor_killed_outright(
    built_catalog: Path, tmp_path: Path, redis_server: str
) -> None:
    root = tmp_path / "shortlist.lancedb"
    shutil.copytree(built_catalog, root, ignore=shutil.ignore_patterns("live"))
    server = Workers(root, redis_server, f"orphans-{time.monotonic_ns()}", tmp_path / "serve.log")
    try:
        server.ready()
        pids = set(server.by_replica(EVENT_COUNT, u="nobody"))
        workers = [int(p.rsplit(":", 1)[1]) for p in pids]
        server.process.kill()  # SIGKILL: the supervisor cannot pass anything on
        server.process.wait(timeout=10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in workers), "no worker serves on, orphaned"
    finally:
        server.stop()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
