"""similarItems, item and user queries."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.store import CatalogRoot
from tests.schema.conftest import gql


@pytest.fixture(scope="module")
def popular_item(built_catalog: Path) -> str:
    items = CatalogRoot(built_catalog).open().table("items").to_pandas()
    return str(items.sort_values("popularity_decayed").iloc[-1]["item_id"])


async def test_similar_items_never_include_the_item(client, popular_item) -> None:
    data = await gql(
        client,
        "query($i: ID!){ similarItems(itemId: $i, count: 10) { score item { id genres } } }",
        i=popular_item,
    )
    similar = data["data"]["similarItems"]
    assert len(similar) == 10
    assert popular_item not in {s["item"]["id"] for s in similar}
    scores = [s["score"] for s in similar]
    assert scores == sorted(scores, reverse=True)


async def test_similar_items_share_genres_with_the_item(client, popular_item) -> None:
    query = (
        "query($i: ID!){ item(id: $i) { genres } "
        "similarItems(itemId: $i, count: 10) { item { genres } } }"
    )
    data = (await gql(client, query, i=popular_item))["data"]
    genres = set(data["item"]["genres"])
    sharing = sum(bool(genres & set(s["item"]["genres"])) for s in data["similarItems"])
    assert sharing >= 6


async def test_similar_items_of_unknown_item_is_empty(client) -> None:
    data = await gql(client, '{ similarItems(itemId: "no-such-item") { score } }')
    assert data["data"]["similarItems"] == []


async def test_item_and_missing_item(client, popular_item) -> None:
    data = await gql(
        client,
        'query($i: ID!){ item(id: $i) { id title released } missing: item(id: "zzz") { id } }',
        i=popular_item,
    )
    assert data["data"]["item"]["id"] == popular_item and data["data"]["item"]["title"]
    assert data["data"]["missing"] is None


async def test_user_with_recent_history(client, built_catalog) -> None:
    users = CatalogRoot(built_catalog).open().table("users").to_pandas()
    row = users.iloc[0]
    data = await gql(
        client,
        "query($u: ID!){ user(id: $u) "
        "{ id eventCount topGenres { genre share } recentItems { id } } }",
        u=row["user_id"],
    )
    user = data["data"]["user"]
    assert user["eventCount"] == row["n_events"]
    assert [i["id"] for i in user["recentItems"]] == list(row["recent_items"][:20])
    assert (await gql(client, '{ user(id: "nobody") { id } }'))["data"]["user"] is None


@pytest.mark.parametrize("bad", ["", "x" * 300, "a\u202eb", "tab\there"])
async def test_bad_ids_are_clear_errors(client, bad) -> None:
    data = await gql(client, "query($u: ID!){ recommendations(userId: $u) { requestId } }", u=bad)
    assert data["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_health_and_readiness(client) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["modelVersion"]


async def test_graphiql_is_served(client) -> None:
    page = await client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
