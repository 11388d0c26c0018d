from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.server import create_app
from app.settings import Settings
from schema.http import graphql_app

# Generous deadlines: these tests check behaviour, not speed, on a busy 2-core CI machine.
RELAXED = {
    "budget_ms": 5000,
    "candidates_ms": 4000,
    "ranking_ms": 4000,
    "reranking_ms": 4000,
    "candidates": {
        name: {"deadline_ms": 3000}
        for name in ("cf_ann", "content_ann", "item_to_item", "fresh", "popular", "exploration")
    },
}


async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, graphql_app())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shortlist") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.fixture
async def client(built_catalog: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(Settings(db_path=built_catalog, pipeline=RELAXED)):
        yield c


@pytest.fixture
def make_client(built_catalog: Path) -> Callable[..., Any]:
    def make(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        return _client(Settings(db_path=built_catalog, **overrides))

    return make


async def gql(client: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]
