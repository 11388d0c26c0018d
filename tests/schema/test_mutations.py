"""recordEvents through the real ASGI app on a copy of a built catalog: keys, effects, limits."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest

from app.candidates.base import ItemGate, SourceInput
from app.domain import RecommendationRequest
from app.settings import Settings
from tests.schema.conftest import (
    EVENTS,
    KEYS,
    RELAXED,
    _client,
    gql,
    ids,
    recommended,
    send,
)


async def stored_events(client: httpx.AsyncClient) -> int:
    return await client.app.state.engine.live.events.count()  # type: ignore[attr-defined, no-any-return]


async def test_mutations_need_the_right_key_and_write_nothing_without_it(
    live_client, live_root
) -> None:
    event = [{"userId": "u1", "itemId": "i0001", "event": "VIEW"}]
    for key, code in ((None, "UNAUTHENTICATED"), ("wrong", "UNAUTHENTICATED")):
        data = await send(live_client, event, key)
        assert data["data"] is None and data["errors"][0]["extensions"]["code"] == code
    for mutation in (
        'mutation { upsertItems(items: [{itemId: "x", title: "X"}]) { inserted } }',
        "mutation { reloadModels { modelVersion } }",
    ):
        response = await live_client.post(
            "/graphql", json={"query": mutation}, headers={"x-api-key": "events-key"}
        )
        assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await stored_events(live_client) == 0

    async for keyless in _client(Settings(db_path=live_root, pipeline=RELAXED)):
        data = await send(keyless, event, "events-key")
        error = data["errors"][0]
        assert error["extensions"]["code"] == "FORBIDDEN"
        assert "SHORTLIST_API_KEY" in error["message"]
    assert (await send(live_client, event, "admin-key"))["data"]["recordEvents"]["accepted"] == 1


async def test_the_next_request_reflects_views_and_dismissals(live_client, catalog_tables) -> None:
    users, _ = catalog_tables
    user = str(users.sort_values("n_events").iloc[len(users) // 2]["user_id"])
    before = ids(await recommended(live_client, user, 50))
    viewed, dismissed = before[0], before[1]

    data = await send(live_client, [{"userId": user, "itemId": viewed, "event": "VIEW"}])
    assert data["data"]["recordEvents"] == {"accepted": 1, "rejected": []}
    after = await recommended(live_client, user, 50)
    assert viewed not in ids(after), "a consumed item is excluded at once"
    anchors = Counter(
        s["anchorItem"]["id"]
        for i in after
        for s in i["explain"]["sources"]
        if s["source"] == "item_to_item" and s["anchorItem"]
    )
    assert anchors[viewed] >= 1, f"no 'because you watched' from the viewed item: {anchors}"

    await send(live_client, [{"userId": user, "itemId": dismissed, "event": "DISMISS"}])
    assert dismissed not in ids(await recommended(live_client, user, 50))
    query = "query($u: ID!) { user(id: $u) { recentItems { id } } }"
    profile = await gql(live_client, query, u=user)
    assert profile["data"]["user"]["recentItems"][0]["id"] == viewed


async def test_dismissed_items_are_demoted_when_configured(live_root, catalog_tables) -> None:
    users, items = catalog_tables
    user = str(users.iloc[3]["user_id"])
    in_series = set(items.loc[items["series"].notna(), "item_id"])
    demote = {**RELAXED, "reranking": {"dismissed": {"mode": "demote", "demote_factor": 0.5}}}
    async for client in _client(Settings(db_path=live_root, pipeline=demote, **KEYS)):
        # not a series entry: series dedup could swap a demoted entry for its sibling
        first = next(i for i in ids(await recommended(client, user, 100)) if i not in in_series)
        await send(client, [{"userId": user, "itemId": first, "event": "DISMISS"}])
        after = await recommended(client, user, 100)
        assert first in ids(after), "demoted, not dropped"
        assert ids(after).index(first) > 0
        assert {"rule": "dismissed"} in after[ids(after).index(first)]["explain"]["rules"]


async def test_bad_events_are_rejected_one_by_one_never_a_server_error(live_client) -> None:
    future = (datetime.now(tz=UTC) + timedelta(days=2)).isoformat()
    data = await send(
        live_client,
        [
            {"userId": "u1", "itemId": "i0001", "event": "CLICK", "device": "tv"},
            {"userId": "u1", "itemId": "no-such-item", "event": "VIEW"},
            {"userId": "u1", "itemId": "i0002", "event": "RATING"},
            {"userId": "u1", "itemId": "i0002", "event": "RATING", "value": 9.5},
            {"userId": "u1", "itemId": "i0002", "event": "VIEW", "at": future},
            {"userId": "u\u0000", "itemId": "i0002", "event": "VIEW"},
            {"userId": "u1", "itemId": "i0003", "event": "PURCHASE", "sessionId": "s" * 65},
            {"userId": "u1", "itemId": "i0004", "event": "RATING", "value": 4.5},
        ],
    )
    result = data["data"]["recordEvents"]
    assert result["accepted"] == 2
    assert [(r["index"], r["code"]) for r in result["rejected"]] == [
        (1, "UNKNOWN_ITEM"),
        (2, "BAD_VALUE"),
        (3, "BAD_VALUE"),
        (4, "BAD_TIME"),
        (5, "BAD_ID"),
        (6, "BAD_LABEL"),
    ]
    assert await stored_events(live_client) == 2

    # NaN is not JSON, but Python's parser takes it: GraphQL's Float refuses it, not a 500
    body = json.dumps({"query": EVENTS, "variables": {"e": []}}).replace(
        '"e": []', '"e": [{"userId": "u1", "itemId": "i0001", "event": "RATING", "value": NaN}]'
    )
    response = await live_client.post(
        "/graphql",
        content=body,
        headers={"content-type": "application/json", "x-api-key": "events-key"},
    )
    assert response.status_code == 200
    assert response.json()["data"] is None and "non numeric" in response.text

    impossible = await send(
        live_client, [{"userId": "u1", "itemId": "i0001", "event": "VIEW", "at": "2021-02-30"}]
    )
    assert impossible["data"] is None and impossible["errors"]
    too_many = await send(
        live_client, [{"userId": "u1", "itemId": "i0001", "event": "VIEW"}] * 1001
    )
    assert too_many["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    empty = await send(live_client, [])
    assert empty["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert await stored_events(live_client) == 2


async def test_a_new_user_gets_personal_results_after_a_few_views(
    live_client, catalog_tables
) -> None:
    """Known answer: five views of one genre's hits turn a cold start into that genre."""
    _, items = catalog_tables
    single = items[items["genres"].map(len) == 1].copy()
    single["genre"] = single["genres"].map(lambda g: g[0])
    genre = single["genre"].value_counts().index[3]  # a mid-sized genre, not the biggest
    picks = single[single["genre"] == genre].nlargest(5, "popularity_decayed")["item_id"].tolist()
    newbie = "brand-new-user"

    def share(found: list[dict[str, Any]]) -> float:
        return float(np.mean([genre in i["item"]["genres"] for i in found]))

    cold = await recommended(live_client, newbie)
    assert not any(s["source"] == "cf_ann" for i in cold for s in i["explain"]["sources"])
    events = [{"userId": newbie, "itemId": i, "event": "VIEW"} for i in picks]
    assert (await send(live_client, events))["data"]["recordEvents"]["accepted"] == 5

    warm = await recommended(live_client, newbie)
    assert share(warm) >= 0.6 and share(warm) >= share(cold) + 0.3, (share(cold), share(warm))
    assert any(s["source"] == "cf_ann" for i in warm for s in i["explain"]["sources"]), (
        "the folded-in CF vector serves the new user"
    )
    assert not set(picks) & set(ids(warm))
    profile = await gql(
        live_client, "query($u: ID!) { user(id: $u) { eventCount topGenres { genre } } }", u=newbie
    )
    assert profile["data"]["user"]["eventCount"] == 5
    assert profile["data"]["user"]["topGenres"][0]["genre"] == genre


async def test_fold_in_of_a_batch_users_history_reproduces_their_vector(
    live_client, catalog_tables
) -> None:
    users, _ = catalog_tables
    engine = live_client.app.state.engine
    loaded = engine.current
    if loaded.runtime.manifest.cf["algorithm"] != "als":
        pytest.skip("the build chose BPR: its user vectors are not least-squares solves")
    cosines = []
    for user in users.nlargest(20, "n_events")["user_id"]:
        history = await loaded.fold_in.history(user, loaded.runtime.items)
        folded = loaded.fold_in.solve(history.items, history.weights)
        trained = loaded.runtime.users.cf[loaded.runtime.users.index.get_loc(user)]
        cosines.append(folded @ trained / np.linalg.norm(folded) / np.linalg.norm(trained))
    assert np.median(cosines) > 0.9, cosines


async def test_trending_lifts_an_item_bots_cannot(live_client, catalog_tables) -> None:
    _, items = catalog_tables
    tail = items.nsmallest(200, "popularity_decayed")["item_id"].tolist()
    real_hit, bot_target = tail[10], tail[11]
    engine = live_client.app.state.engine

    async def popular_rank(item: str) -> int | None:
        loaded = engine.current
        source = next(s for s in loaded.pipeline.candidates.sources if s.name == "popular")
        request = RecommendationRequest("cold", 30, datetime.now(tz=UTC))
        user = await engine.user_state(loaded, "cold")
        gate = ItemGate.for_request(request, user, loaded.runtime.items, True)
        found = (await source(SourceInput(request, user, gate))).items.tolist()
        index = loaded.runtime.items.index_of(item)
        return found.index(index) + 1 if index in found else None

    assert await popular_rank(real_hit) is None
    people = [{"userId": f"person{n}", "itemId": real_hit, "event": "VIEW"} for n in range(20)]
    bots = [
        {"userId": f"bot{n % 5}", "itemId": bot_target, "event": "PURCHASE"} for n in range(1000)
    ]
    await send(live_client, people)
    burst = [(await send(live_client, bots))["data"]["recordEvents"] for _ in range(2)]
    assert sum(b["accepted"] for b in burst) < 2000, "the per-user rate limit"
    assert {r["code"] for b in burst for r in b["rejected"]} == {"RATE_LIMITED"}
    hit_rank, bot_rank = await popular_rank(real_hit), await popular_rank(bot_target)
    assert hit_rank is not None and hit_rank <= 20
    assert bot_rank is None or bot_rank > hit_rank
