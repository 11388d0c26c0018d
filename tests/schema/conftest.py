from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from app.pipeline import SOURCES
from app.server import create_app
from app.settings import Settings
from app.store import CatalogRoot
from schema.http import graphql_app

# Generous deadlines: these tests check behaviour, not speed, on a busy 2-core CI machine.
RELAXED = {
    "budget_ms": 5000,
    "user_state_ms": 4000,
    "candidates_ms": 4000,
    "ranking_ms": 4000,
    "reranking_ms": 4000,
    "candidates": {source.name: {"deadline_ms": 3000} for source in SOURCES},
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


# --- mutations: keys, private catalog copies, helpers -----------------------------------------
KEYS = {"api_key": "events-key", "admin_key": "admin-key"}
EVENTS = """mutation($e: [EventInput!]!) {
  recordEvents(events: $e) { accepted rejected { index code reason } }
}"""
RECS = """query($u: ID!, $n: Int) {
  recommendations(userId: $u, count: $n) {
    modelVersion
    items { item { id genres } explain { sources { source anchorItem { id } } rules { rule } } }
  }
}"""


@pytest.fixture
def live_root(built_catalog: Path, tmp_path: Path) -> Path:
    """A private copy of the built catalog: mutations write into it."""
    root = tmp_path / "shortlist.lancedb"
    shutil.copytree(built_catalog, root, ignore=shutil.ignore_patterns("live"))
    return root


@pytest.fixture
async def live_client(live_root: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(Settings(db_path=live_root, pipeline=RELAXED, **KEYS)):
        yield c


@pytest.fixture(scope="module")
def catalog_tables(built_catalog: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The built catalog's users and items tables."""
    version = CatalogRoot(built_catalog).open()
    return version.table("users").to_pandas(), version.table("items").to_pandas()


async def send(
    client: httpx.AsyncClient, events: list[dict[str, Any]], key: str | None = "events-key"
) -> dict[str, Any]:
    """recordEvents with `key` in X-API-Key (None: no header)."""
    headers = {"x-api-key": key} if key is not None else {}
    response = await client.post(
        "/graphql", json={"query": EVENTS, "variables": {"e": events}}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def admin(client: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"x-api-key": KEYS["admin_key"]},
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def recommended(client: httpx.AsyncClient, user: str, n: int = 30) -> list[dict[str, Any]]:
    data = await gql(client, RECS, u=user, n=n)
    assert "errors" not in data, data
    return data["data"]["recommendations"]["items"]  # type: ignore[no-any-return]


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [i["item"]["id"] for i in items]
