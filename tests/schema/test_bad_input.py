"""Whatever a client sends, the answer is a clear error or a valid result, never a 5xx."""

from __future__ import annotations

import pytest

from schema.queries import _error
from tests.schema.conftest import gql

ITEMS = "{ degraded items { item { id released } } }"


async def test_release_filter_at_the_end_of_time_is_an_empty_list(client) -> None:
    query = 'query { recommendations(userId: "u0001", filter: {releasedAfter: "9999-12-31"}) '
    data = await gql(client, query + ITEMS + " }")
    assert data["data"]["recommendations"]["items"] == []


@pytest.mark.parametrize(
    "at", ["0001-01-01T00:00:00", "9999-12-31T23:59:59Z", "2020-01-01T00:00:00+14:00"]
)
async def test_any_moment_answers(client, at) -> None:
    query = 'query($at: DateTime) { recommendations(userId: "u0001", context: {at: $at}) '
    data = await gql(client, query + ITEMS + " }", at=at)
    assert "errors" not in data and data["data"]["recommendations"]["items"]


@pytest.mark.parametrize("device", ["x" * 65, "tv\u0000", "\u202emobile"])
async def test_bad_device_is_refused_with_a_code(client, device) -> None:
    query = (
        'query($d: String) { recommendations(userId: "u0001", context: {device: $d}) { degraded } }'
    )
    data = await gql(client, query, d=device)
    assert data["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert "context.device" in data["errors"][0]["message"]


async def test_sql_looking_strings_are_just_strings(client) -> None:
    query = (
        'query { recommendations(userId: "u0001", filter: {genres: ["\'; DROP TABLE items; --"], '
        'excludeIds: ["\'", "a\'b"]}) { items { item { id } } } }'
    )
    data = await gql(client, query)
    assert "errors" not in data
    assert data["data"]["recommendations"]["items"] == []  # no item has that genre


async def test_syntax_error_and_malformed_json(client) -> None:
    data = await gql(client, '{ recommendations(userId: "1") { degraded ')
    assert data["data"] is None and "Syntax Error" in data["errors"][0]["message"]
    response = await client.post(
        "/graphql", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400


def test_unexpected_errors_are_masked_with_a_code(caplog) -> None:
    error = _error(ValueError("secret internals"))
    assert error.extensions == {"code": "INTERNAL"}
    assert "secret" not in error.message
