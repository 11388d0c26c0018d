"""Keys for queries when configured, and per-client rate limits for queries and events."""

from __future__ import annotations

from app.settings import Settings
from tests.schema.conftest import EVENTS, KEYS, RELAXED, _client, send

QUERY = '{ item(id: "i0001") { id } }'


async def post(client, query: str, key: str | None = None, **variables):
    headers = {"x-api-key": key} if key else {}
    return await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )


async def test_queries_need_a_key_when_configured(live_root) -> None:
    settings = Settings(db_path=live_root, pipeline=RELAXED, queries_need_key=True, **KEYS)
    async for client in _client(settings):
        for key in (None, "wrong"):
            response = await post(client, QUERY, key)
            assert response.status_code == 200
            data = response.json()
            assert data["data"] is None
            assert data["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        # refused before the document is even read
        response = await post(client, "{ not graphql", None)
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        for key in KEYS.values():
            response = await post(client, QUERY, key)
            assert "errors" not in response.json(), response.text
        # the mutations keep their own rule: the API key may not upsert
        response = await post(
            client,
            'mutation { upsertItems(items: [{itemId: "x", title: "X"}]) { inserted } }',
            KEYS["api_key"],
        )
        assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_queries_over_the_budget_get_429_with_a_retry_hint(live_root) -> None:
    settings = Settings(
        db_path=live_root,
        pipeline=RELAXED,
        query_rate_per_client=0.01,
        query_burst_per_client=3,
        **KEYS,
    )
    async for client in _client(settings):
        two = '{ a: item(id: "i0001") { id } b: item(id: "i0002") { id } }'
        assert (await post(client, two)).status_code == 200  # 2 of 3: one per top-level field
        assert (await post(client, QUERY)).status_code == 200
        refused = await post(client, QUERY)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        error = refused.json()["errors"][0]
        assert error["extensions"]["code"] == "RATE_LIMITED"
        assert error["extensions"]["retryAfter"] > 0
        assert "SHORTLIST_QUERY_RATE_PER_CLIENT" in error["message"]
        # a made-up key is the same client (its address); a valid key is another
        assert (await post(client, QUERY, "made-up")).status_code == 429
        assert (await post(client, QUERY, KEYS["api_key"])).status_code == 200


async def test_events_over_the_budget_are_refused_whole_and_nothing_is_written(
    live_root,
) -> None:
    settings = Settings(
        db_path=live_root,
        pipeline=RELAXED,
        event_rate_per_client=0.01,
        event_burst_per_client=10,
        **KEYS,
    )
    async for client in _client(settings):
        engine = client.app.state.engine  # type: ignore[attr-defined]
        events = [{"userId": f"u{n}", "itemId": "i0001", "event": "VIEW"} for n in range(8)]
        assert (await send(client, events))["data"]["recordEvents"]["accepted"] == 8
        response = await client.post(
            "/graphql",
            json={"query": EVENTS, "variables": {"e": events[:3]}},
            headers={"x-api-key": KEYS["api_key"]},
        )
        assert response.status_code == 429 and "retry-after" in response.headers
        data = response.json()
        assert data["data"] is None
        assert data["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert await engine.live.events.count() == 8
        # the admin key is another client with its own budget
        assert (await send(client, events[:2], KEYS["admin_key"]))["data"]["recordEvents"][
            "accepted"
        ] == 2


async def test_default_budgets_do_not_throttle_normal_use(live_client) -> None:
    for _ in range(30):
        assert (await post(live_client, QUERY)).status_code == 200
    events = [{"userId": f"u{n}", "itemId": "i0001", "event": "VIEW"} for n in range(1000)]
    for _ in range(3):
        assert (await send(live_client, events))["data"]["recordEvents"]["accepted"] == 1000
