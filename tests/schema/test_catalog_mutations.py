"""upsertItems and reloadModels through the real ASGI app, on private copies of a built catalog."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import date, timedelta
from typing import Any

import numpy as np

from app.realtime.feed import ItemsBusy, ItemsNotice
from app.realtime.records import ItemDraft
from app.settings import Settings
from app.store import MANIFEST, CatalogRoot
from pipelines.build import build
from schema.context import Context
from tests.schema.conftest import KEYS, RELAXED, _client, admin, gql, ids, recommended, send

UPSERT = """mutation($i: [ItemInput!]!) {
  upsertItems(items: $i) { inserted updated items { id title genres released } }
}"""
RELOAD = "mutation { reloadModels { modelVersion previousVersion switched replayedEvents } }"
SIMILAR = "query($i: ID!) { similarItems(itemId: $i, count: 5) { item { id } } }"
TODAY = date.today()
NEW_ITEMS = [
    {
        "itemId": "new-1",
        "title": "The Lighthouse Keeper's Daughter",
        "description": "A storm cuts off a remote island; the keeper's daughter keeps the light.",
        "genres": ["Drama", "Mystery"],
        "released": (TODAY - timedelta(days=2)).isoformat(),
    },
    {
        "itemId": "new-2",
        "title": "The Lighthouse Keeper's Daughter: Return",
        "description": "Years later a storm again cuts off the island and its lighthouse.",
        "genres": ["Drama", "Mystery"],
        "series": "Lighthouse",
        "released": (TODAY - timedelta(days=1)).isoformat(),
    },
]


async def test_upserted_items_are_served_at_once_and_after_a_restart(
    live_client, live_root
) -> None:
    engine = live_client.app.state.engine
    before = len(engine.current.runtime.items)
    changed = {"itemId": "i0005", "title": "A New Title", "genres": ["Drama"]}
    data = await admin(live_client, UPSERT, i=[*NEW_ITEMS, changed])
    result = data["data"]["upsertItems"]
    assert result["inserted"] == ["new-1", "new-2"] and result["updated"] == ["i0005"]
    assert [i["title"] for i in result["items"]][2] == "A New Title"
    assert len(engine.current.runtime.items) == before + 2

    similar = await gql(live_client, SIMILAR, i="new-1")
    assert ids(similar["data"]["similarItems"])[0] == "new-2"
    fresh = await gql(
        live_client,
        'query($d: Date) { recommendations(userId: "u0001", count: 10, '
        "filter: {releasedAfter: $d}) { items { item { id } explain { sources { source } } } } }",
        d=(TODAY - timedelta(days=5)).isoformat(),
    )
    found = fresh["data"]["recommendations"]["items"]
    assert {"new-1", "new-2"} <= set(ids(found))
    assert all(any(s["source"] == "fresh" for s in i["explain"]["sources"]) for i in found)
    item = await gql(live_client, '{ item(id: "i0005") { title genres } }')
    assert item["data"]["item"] == {"title": "A New Title", "genres": ["Drama"]}

    again = (await admin(live_client, UPSERT, i=NEW_ITEMS))["data"]["upsertItems"]
    assert again["inserted"] == [] and again["updated"] == []
    event = [{"userId": "u0001", "itemId": "new-1", "event": "VIEW"}]
    assert (await send(live_client, event))["data"]["recordEvents"]["accepted"] == 1

    async for restarted in _client(Settings(db_path=live_root, pipeline=RELAXED, **KEYS)):
        assert len(restarted.app.state.engine.current.runtime.items) == before + 2
        similar = await gql(restarted, SIMILAR, i="new-2")
        assert ids(similar["data"]["similarItems"])[0] == "new-1"
        item = await gql(restarted, '{ item(id: "i0005") { title } }')
        assert item["data"]["item"]["title"] == "A New Title"


class RefusesOneNotice:
    """The live feed, except that the first items notice is refused (Redis gone for a moment)."""

    def __init__(self, feed: Any) -> None:
        self.feed, self.notices, self.refused = feed, [], False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.feed, name)

    async def publish_items(self, notice: ItemsNotice) -> None:
        if not self.refused:
            self.refused = True
            raise ItemsBusy("redis refused the notice")
        self.notices.append(notice)


async def test_a_retried_upsert_tells_the_replicas_what_a_refused_notice_did_not(
    live_client,
) -> None:
    engine = live_client.app.state.engine
    feed = RefusesOneNotice(engine.live.events.feed)
    engine.live.events.feed = feed
    try:
        failed = await admin(live_client, UPSERT, i=NEW_ITEMS)
        assert failed["errors"][0]["extensions"]["code"] == "LIVE_STORE_UNAVAILABLE"
        assert feed.notices == []  # stored and served here, the other replicas not told
        again = (await admin(live_client, UPSERT, i=NEW_ITEMS))["data"]["upsertItems"]
        assert again["inserted"] == [] and again["updated"] == []  # nothing changed...
        # ...and the retry still names the items for the other replicas
        assert [n.item_ids for n in feed.notices] == [["new-1", "new-2"]]
        assert feed.notices[0].version == engine.current.runtime.version
    finally:
        engine.live.events.feed = feed.feed


async def test_bad_items_are_refused_whole(live_client) -> None:
    for items, message in (
        ([{"itemId": "x", "title": " "}], "title"),
        ([{"itemId": "x\u202e", "title": "X"}], "itemId"),
        ([{"itemId": "x", "title": "X", "genres": ["a"] * 21}], "genres"),
        ([{"itemId": "x", "title": "X", "released": "2999-01-01"}], "released"),
        ([], "at least one"),
        ([{"itemId": f"x{n}", "title": "X"} for n in range(101)], "at most 100"),
    ):
        data = await admin(live_client, UPSERT, i=items)
        error = data["errors"][0]
        assert error["extensions"]["code"] == "BAD_REQUEST" and message in error["message"]
    assert live_client.app.state.engine.current.revision == 0


async def test_reload_switches_to_a_second_build_and_keeps_live_state(
    live_client, live_root, generated_source, catalog_tables
) -> None:
    users, _ = catalog_tables
    user = str(users.iloc[5]["user_id"])
    engine = live_client.app.state.engine
    first = engine.current.runtime.version
    shown = ids(await recommended(live_client, user, 50))
    await send(live_client, [{"userId": user, "itemId": shown[0], "event": "DISMISS"}])

    settings = Settings(db_path=live_root, train_ranker=False)
    manifest = await asyncio.to_thread(build, generated_source, "generic", settings)
    assert manifest.live_watermark == 0, "the build trained on the live event"
    # after the build: one more event, and one item upserted straight into the live table
    await send(live_client, [{"userId": user, "itemId": shown[1], "event": "DISMISS"}])
    dim = engine.current.runtime.manifest.content_dim
    vector = np.random.default_rng(0).normal(size=(1, dim)).astype(np.float32)
    await engine.live.items.record([ItemDraft("late-item", "A Late Arrival")], vector)

    result = (await admin(live_client, RELOAD))["data"]["reloadModels"]
    assert result == {
        "modelVersion": manifest.version,
        "previousVersion": first,
        "switched": True,
        "replayedEvents": 1,
    }
    after = await gql(
        live_client,
        "query($u: ID!) { recommendations(userId: $u, count: 50) "
        "{ modelVersion items { item { id } } } }",
        u=user,
    )
    assert after["data"]["recommendations"]["modelVersion"] == manifest.version
    assert not {shown[0], shown[1]} & set(ids(after["data"]["recommendations"]["items"]))
    assert (await gql(live_client, '{ item(id: "late-item") { title } }'))["data"]["item"]
    again = (await admin(live_client, RELOAD))["data"]["reloadModels"]
    assert again["switched"] is False and again["modelVersion"] == manifest.version


async def test_a_failed_load_keeps_the_old_version_serving(live_client, live_root) -> None:
    root = CatalogRoot(live_root)
    serving = root.current()
    assert serving is not None
    broken = "v29991231-000000-000"
    shutil.copytree(root.versions_dir / serving, root.versions_dir / broken)
    manifest = json.loads((root.versions_dir / broken / MANIFEST).read_text())
    (root.versions_dir / broken / MANIFEST).write_text(json.dumps({**manifest, "version": broken}))
    (root.versions_dir / broken / "ranker.cbm").write_bytes(b"not a model")
    root.publish(broken)

    data = await admin(live_client, RELOAD)
    error = data["errors"][0]
    assert error["extensions"] == {"code": "RELOAD_FAILED", "modelVersion": serving}
    assert "ranker" in error["message"] and serving in error["message"]
    query = '{ recommendations(userId: "u0001", count: 5) { modelVersion } }'
    still = await gql(live_client, query)
    assert still["data"]["recommendations"]["modelVersion"] == serving


def test_a_request_reads_one_catalog_even_across_a_swap() -> None:
    class Engine:
        current = "first"

    context = Context(engine=Engine())  # type: ignore[arg-type]
    assert context.loaded == "first"
    Engine.current = "second"  # a reload or an upsert swaps the engine's catalog
    assert context.loaded == "first"
