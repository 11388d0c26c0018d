"""Abusive documents and bodies are refused with a code before any work, never with a 5xx."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.schema.conftest import EVENTS, KEYS, RELAXED, gql


def codes(data: dict) -> list[str]:
    return [e["extensions"]["code"] for e in data["errors"]]


async def test_tokens_depth_and_aliases_each_have_their_code(make_client) -> None:
    async for client in make_client(
        pipeline=RELAXED, max_query_depth=2, max_query_aliases=5, max_query_tokens=200
    ):
        deep = '{ recommendations(userId: "u0001") { items { item { id } } } }'
        assert codes(await gql(client, deep)) == ["QUERY_TOO_DEEP"]
        shallow = '{ recommendations(userId: "u0001", count: 3) { items { position } } }'
        assert "errors" not in await gql(client, shallow)

        aliases = "{ " + " ".join(f"a{n}: __typename" for n in range(6)) + " }"
        assert codes(await gql(client, aliases)) == ["TOO_MANY_ALIASES"]
        five = "{ " + " ".join(f"a{n}: __typename" for n in range(5)) + " }"
        assert (await gql(client, five))["data"]["a4"] == "Query"

        long = "{ " + " ".join("__typename" for _ in range(300)) + " }"
        assert codes(await gql(client, long)) == ["TOO_MANY_TOKENS"]


async def test_introspection_can_be_turned_off(make_client, client) -> None:
    query = "{ __schema { queryType { name } } }"
    assert (await gql(client, query))["data"]["__schema"]["queryType"]["name"] == "Query"
    async for closed in make_client(pipeline=RELAXED, introspection=False):
        data = await gql(closed, query)
        assert data["data"] is None and set(codes(data)) == {"INTROSPECTION_DISABLED"}
        assert (await gql(closed, "{ __typename }"))["data"] == {"__typename": "Query"}


async def test_graphiql_off_serves_no_ide(built_catalog) -> None:
    from app.server import create_app
    from app.settings import Settings
    from schema.http import graphql_app

    app = create_app(Settings(db_path=built_catalog), graphql_app(graphiql=False))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as client:
            response = await client.get("/graphql", headers={"accept": "text/html"})
            assert response.status_code == 404
            assert response.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[" * 50_000, "not valid JSON"),  # nested too deeply for the parser
        (b'{"query": "{ __typename }", "variables": {"n": 1' + b"0" * 5000 + b"}}", "JSON"),
        (b"5", "JSON object"),
        (b"null", "JSON object"),
        (b'"{ __typename }"', "JSON object"),
        (b"[]", "Batching"),
        (b"{}", "No GraphQL query"),
        (b'{"query": 5}', "string"),
        (b'{"query": "{ __typename }", "variables": [1]}', "object"),
    ],
)
async def test_malformed_bodies_are_400_with_a_code(client, body, why) -> None:
    response = await client.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST" and why in error["message"]


async def test_other_methods_and_types_are_4xx_with_a_code(client) -> None:
    response = await client.put("/graphql", json={"query": "{ __typename }"})
    assert response.status_code == 405
    assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    response = await client.post("/graphql", content=b"{}", headers={"content-type": "text/csv"})
    assert response.status_code == 400
    response = await client.get("/graphql", params={"query": EVENTS, "variables": "{}"})
    assert response.status_code == 400 and "GET" in response.json()["errors"][0]["message"]


async def test_oversized_bodies_are_refused_before_they_are_read(make_client, live_root) -> None:
    from app.settings import Settings
    from tests.schema.conftest import _client

    async for client in _client(
        Settings(db_path=live_root, pipeline=RELAXED, max_body_bytes=4096, **KEYS)
    ):
        events = [{"userId": "u1", "itemId": "i0001", "event": "VIEW"}] * 100
        response = await client.post(
            "/graphql",
            json={"query": EVENTS, "variables": {"e": events}},
            headers={"x-api-key": KEYS["api_key"]},
        )
        assert response.status_code == 413
        assert response.json()["errors"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"

        payload = json.dumps({"query": EVENTS, "variables": {"e": events}}).encode()

        async def streamed(data: bytes) -> AsyncIterator[bytes]:  # no Content-Length
            yield data

        response = await client.post(
            "/graphql",
            content=streamed(payload),
            headers={"x-api-key": KEYS["api_key"], "content-type": "application/json"},
        )
        assert response.status_code == 413
        engine = client.app.state.engine  # type: ignore[attr-defined]
        assert await engine.live.events.count() == 0
        small = await client.post(
            "/graphql",
            json={"query": EVENTS, "variables": {"e": events[:3]}},
            headers={"x-api-key": KEYS["api_key"]},
        )
        assert small.json()["data"]["recordEvents"]["accepted"] == 3


async def test_list_and_count_limits(live_client) -> None:
    for count in (0, 201):
        query = f'{{ similarItems(itemId: "i0001", count: {count}) {{ score }} }}'
        assert codes(await gql(live_client, query)) == ["BAD_REQUEST"]
    items = [{"itemId": f"n{n}", "title": "T"} for n in range(101)]
    response = await live_client.post(
        "/graphql",
        json={
            "query": "mutation($i: [ItemInput!]!) { upsertItems(items: $i) { inserted } }",
            "variables": {"i": items},
        },
        headers={"x-api-key": KEYS["admin_key"]},
    )
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST" and "at most 100" in error["message"]


@pytest.mark.parametrize(
    ("variables", "code"),
    [
        ('{"v": NaN}', "BAD_USER_INPUT"),
        ('{"v": Infinity}', "BAD_USER_INPUT"),
        ('{"v": "4.5"}', "BAD_USER_INPUT"),
        ('{"v": 1e999}', "BAD_USER_INPUT"),
    ],
)
async def test_refused_values_log_one_line_without_a_traceback(
    live_client, caplog, variables, code
) -> None:
    query = (
        "mutation($v: Float) { recordEvents(events: "
        '[{userId: "u1", itemId: "i0001", event: RATING, value: $v}]) { accepted } }'
    )
    body = '{"query": ' + json.dumps(query) + ', "variables": ' + variables + "}"
    with caplog.at_level(logging.INFO):
        response = await live_client.post(
            "/graphql",
            content=body,
            headers={"content-type": "application/json", "x-api-key": KEYS["api_key"]},
        )
    assert response.status_code == 200 and codes(response.json()) == [code]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    refused = [r for r in caplog.records if "request refused" in r.getMessage()]
    assert len(refused) == 1 and code in refused[0].getMessage()


async def test_an_explicit_null_for_an_argument_with_a_default_is_the_clients_error(
    client, caplog
) -> None:
    # `count: Int! = 10` accepts a nullable variable (the default covers an omitted one), but
    # graphql-core refuses an explicit null only as the field executes: still BAD_USER_INPUT.
    query = 'query($n: Int) { recommendations(userId: "u0001", count: $n) { requestId } }'
    with caplog.at_level(logging.INFO):
        data = await gql(client, query, n=None)
    assert codes(data) == ["BAD_USER_INPUT"] and "count" in data["errors"][0]["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    similar = 'query($n: Int) { similarItems(itemId: "i0001", count: $n) { item { id } } }'
    assert codes(await gql(client, similar, n=None)) == ["BAD_USER_INPUT"]


def _post_scope() -> dict:
    """An ASGI scope of a POST to /graphql, for tests that play the client's part by hand."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"host", b"shortlist")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


@pytest.mark.parametrize(
    "sent",
    [
        [],  # hung up before any of the body arrived
        [{"type": "http.request", "body": b'{"query": "{ __typ', "more_body": True}],
    ],
)
async def test_a_client_hanging_up_before_its_body_is_read_is_one_line_not_an_error(
    client, caplog, sent
) -> None:
    messages = [*sent, {"type": "http.disconnect"}]

    async def receive() -> dict:
        return messages.pop(0) if len(messages) > 1 else messages[0]

    answered: list[dict] = []

    async def send(message: dict) -> None:
        answered.append(message)

    scope = _post_scope()
    with caplog.at_level(logging.INFO):
        await client.app(scope, receive, send)  # type: ignore[attr-defined]
    assert answered == []  # no one to answer
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    lines = [r for r in caplog.records if r.name == "shortlist.requests"]
    assert len(lines) == 1 and lines[0].status == 499  # type: ignore[attr-defined]
    assert lines[0].operation == "disconnected"  # type: ignore[attr-defined]
    assert (await gql(client, "{ __typename }"))["data"] == {"__typename": "Query"}


async def test_a_recommendations_request_left_waiting_by_its_client_is_not_answered(
    make_client, caplog
) -> None:
    import asyncio

    body = json.dumps(
        {"query": '{ recommendations(userId: "u0001", count: 5) { items { item { id } } } }'}
    ).encode()
    hung_up = asyncio.Event()

    async def receive() -> dict:
        if not hung_up.is_set():
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    answered: list[dict] = []

    async def send(message: dict) -> None:
        answered.append(message)

    async for client in make_client(pipeline={**RELAXED, "in_flight": 1}):
        engine = client.app.state.engine  # type: ignore[attr-defined]
        observed: list[object] = []
        engine.observers.append(observed.append)
        with caplog.at_level(logging.INFO):
            async with engine.admission.turn(10_000):  # the only slot, held meanwhile
                task = asyncio.create_task(client.app(_post_scope(), receive, send))  # type: ignore[attr-defined]
                await asyncio.sleep(0.2)  # the body is read and the request queued
                hung_up.set()
            await task
        assert answered == [] and observed == [], "nothing computed, nothing sent"
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
        lines = [r for r in caplog.records if r.name == "shortlist.requests"]
        assert len(lines) == 1 and lines[0].status == 499  # type: ignore[attr-defined]
        assert lines[0].operation == "recommendations"  # type: ignore[attr-defined]
