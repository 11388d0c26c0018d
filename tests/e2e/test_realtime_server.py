"""A real `shortlist serve` process: acknowledged events survive kill -9; SIGHUP swaps versions."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import lancedb

from app.store import CatalogRoot
from tests.e2e.serve import ServeProcess, publish_copy

KEY, ADMIN = "e2e-events-key", "e2e-admin-key"
EVENTS = "mutation($e: [EventInput!]!) { recordEvents(events: $e) { accepted } }"
RECS = "query($u: ID!) { recommendations(userId: $u, count: 50) { items { item { id } } } }"


class Server(ServeProcess):
    def __init__(self, root: Path) -> None:
        pipeline = {"budget_ms": 5000, "user_state_ms": 4000, "candidates_ms": 4000}
        env = {
            "SHORTLIST_API_KEY": KEY,
            "SHORTLIST_ADMIN_KEY": ADMIN,
            "SHORTLIST_PIPELINE": json.dumps(pipeline),
        }
        super().__init__(root, env, root.parent / "server.log")

    def post(self, query: str, key: str | None = KEY, **variables: Any) -> dict[str, Any]:
        return self.ask(query, key, 30, **variables)


def _recommended(server: Server, user: str) -> list[str]:
    data = server.post(RECS, u=user)
    return [i["item"]["id"] for i in data["data"]["recommendations"]["items"]]


def test_acknowledged_events_survive_kill_9_and_sighup_swaps_versions(
    built_catalog: Path, tmp_path: Path
) -> None:
    root = tmp_path / "shortlist.lancedb"
    shutil.copytree(built_catalog, root, ignore=shutil.ignore_patterns("live"))
    version = CatalogRoot(root).open()
    user = str(version.table("users").to_pandas()["user_id"].iloc[7])
    item_ids = version.table("items").to_pandas()["item_id"].tolist()

    server = Server(root)
    acknowledged: list[str] = []
    try:
        server.ready()
        dismissed = _recommended(server, user)[0]
        data = server.post(EVENTS, e=[{"userId": user, "itemId": dismissed, "event": "DISMISS"}])
        assert data["data"]["recordEvents"]["accepted"] == 1
        assert dismissed not in _recommended(server, user)

        stop = threading.Event()

        def keep_sending() -> None:
            batch = 0
            while not stop.is_set():
                session = f"batch-{batch}"
                events = [
                    {
                        "userId": f"load{(batch * 10 + n) % 97}",
                        "itemId": item_ids[(batch * 10 + n) % len(item_ids)],
                        "event": "VIEW",
                        "sessionId": session,
                    }
                    for n in range(10)
                ]
                try:
                    data = server.post(EVENTS, e=events)
                except (httpx.TransportError, AssertionError):
                    return  # the server is gone: this batch was never acknowledged
                if data.get("data") and data["data"]["recordEvents"]["accepted"] == 10:
                    acknowledged.append(session)
                batch += 1

        sender = threading.Thread(target=keep_sending)
        sender.start()
        while len(acknowledged) < 25 and sender.is_alive():
            time.sleep(0.05)
        server.process.send_signal(signal.SIGKILL)  # while batches are still in flight
        server.process.wait(timeout=30)
        stop.set()
        sender.join(timeout=60)
    finally:
        server.stop()

    assert len(acknowledged) >= 25
    events = lancedb.connect(str(root / "live")).open_table("events").to_pandas()
    stored = set(events["session_id"].dropna())
    missing = [s for s in acknowledged if s not in stored]
    assert not missing, f"acknowledged but lost: {missing}"
    assert ((events["user_id"] == user) & (events["event"] == "dismiss")).sum() == 1

    restarted = Server(root)
    try:
        first = restarted.ready()["modelVersion"]
        assert dismissed not in _recommended(restarted, user), "replayed after the crash"
        load0 = int((events["user_id"] == "load0").sum())
        data = restarted.post('{ user(id: "load0") { eventCount } }')
        assert data["data"]["user"]["eventCount"] == load0

        # a new version appears (a copy stands in for a build); SIGHUP switches to it
        second = "v29990101-000000-000"
        assert publish_copy(root, second) == first
        restarted.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 120
        while restarted.ready()["modelVersion"] != second:
            assert time.monotonic() < deadline, "SIGHUP did not switch the version"
            time.sleep(0.2)
        assert dismissed not in _recommended(restarted, user), "live state kept across the swap"
    finally:
        restarted.stop()
