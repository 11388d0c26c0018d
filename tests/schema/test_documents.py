"""A document that passed is parsed and validated once; a refused one is refused every time."""

from __future__ import annotations

from typing import Any

import pytest
import strawberry.schema.schema as strawberry_schema
from graphql import parse

from schema.documents import Documents
from tests.schema.conftest import gql

LIMITS = (2000, 10, 30, True)


def test_documents_keep_the_most_recently_used_within_their_size() -> None:
    documents = Documents(size=2)
    texts = ["{ a }", "{ b }", "{ c }"]
    for text in texts[:2]:
        documents.passed(text, LIMITS, parse(text))
    assert documents.valid("{ a }", LIMITS) is not None  # now the most recently used
    documents.passed("{ c }", LIMITS, parse("{ c }"))
    assert len(documents) == 2
    assert documents.valid("{ b }", LIMITS) is None
    assert documents.valid("{ a }", LIMITS) is not None
    assert documents.valid("{ c }", LIMITS) is not None


def test_a_document_is_valid_only_under_the_limits_it_passed() -> None:
    documents = Documents()
    documents.passed("{ a }", LIMITS, parse("{ a }"))
    assert documents.valid("{ a }", (2000, 2, 30, True)) is None


def test_long_documents_are_not_kept() -> None:
    documents = Documents(max_chars=10)
    text = "{ " + "a " * 10 + "}"
    documents.passed(text, LIMITS, parse(text))
    assert documents.valid(text, LIMITS) is None and len(documents) == 0


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts Strawberry parses (it parses only what it was not handed already parsed)."""
    seen: list[str] = []

    def counted(source: Any, **options: Any) -> Any:
        seen.append(str(source))
        return parse(source, **options)

    monkeypatch.setattr(strawberry_schema, "parse", counted)
    return seen


async def test_a_repeated_query_is_parsed_once_and_answers_each_time(client, parses) -> None:
    query = "query($u: ID!) { recommendations(userId: $u, count: 3) { items { item { id } } } }"
    first = await gql(client, query, u="u0001")
    second = await gql(client, query, u="u0002")
    assert parses == [query]
    assert len(first["data"]["recommendations"]["items"]) == 3
    assert len(second["data"]["recommendations"]["items"]) == 3


async def test_a_refused_document_is_refused_every_time(make_client, parses) -> None:
    unknown = '{ recommendations(userId: "u0001") { nope } }'
    deep = '{ recommendations(userId: "u0001") { items { item { id } } } }'
    async for client in make_client(max_query_depth=2):
        for _ in range(2):
            data = await gql(client, unknown)
            assert [e["extensions"]["code"] for e in data["errors"]] == [
                "GRAPHQL_VALIDATION_FAILED"
            ]
            data = await gql(client, deep)
            assert [e["extensions"]["code"] for e in data["errors"]] == ["QUERY_TOO_DEEP"]
    assert parses == [unknown, deep, unknown, deep]
