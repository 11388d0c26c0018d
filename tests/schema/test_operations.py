"""Operations: /healthz, /readyz, /metrics and the per-request log line, on the real ASGI app."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis
from prometheus_client.parser import text_string_to_metric_families
from threadpoolctl import threadpool_info, threadpool_limits

from app.logs import JsonFormatter
from app.server import create_app
from app.settings import Settings
from schema.http import graphql_app
from tests.schema.conftest import RELAXED, _client, gql

RECS = """query($u: ID!) { recommendations(userId: $u, count: 10) {
  requestId degraded modelVersion stages { name status } } }"""
SIMILAR = '{ similarItems(itemId: "i0001", count: 5) { item { id } } }'


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_readyz_is_503_until_the_engine_is_loaded(built_catalog: Path) -> None:
    app = create_app(Settings(db_path=built_catalog), graphql_app())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shortlist") as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        starting = await client.get("/readyz")  # the lifespan has not started the engine
        assert (starting.status_code, starting.json()) == (503, {"status": "starting"})
        async with app.router.lifespan_context(app):
            ready = await client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["status"] == "ready" and ready.json()["modelVersion"]


async def test_serving_holds_blas_to_its_setting_and_gives_the_threads_back(
    built_catalog: Path,
) -> None:
    def blas_threads() -> set[int]:
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    with threadpool_limits(2, "blas"):
        app = create_app(Settings(db_path=built_catalog), graphql_app())
        async with app.router.lifespan_context(app):
            assert blas_threads() == {1}
        assert blas_threads() == {2}


async def test_metrics_report_stage_and_source_latency_cache_and_version(client) -> None:
    for _ in range(2):
        assert "errors" not in await gql(client, RECS, u="u0001")
        assert "errors" not in await gql(client, SIMILAR)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    for stage in ("user_state", "candidates", "ranking", "reranking"):
        assert samples[("shortlist_stage_seconds_count", (("stage", stage),))] == 2
    for source in ("cf_ann", "content_ann", "popular"):
        assert samples[("shortlist_source_seconds_count", (("source", source),))] == 2
    operation = (("operation", "recommendations"),)
    assert samples[("shortlist_request_seconds_count", operation)] == 2
    assert samples[("shortlist_request_seconds_count", (("operation", "similarItems"),))] == 2
    similar = ("cache", "similar_items")
    assert samples[("shortlist_cache_requests_total", (similar, ("result", "hit")))] == 1
    assert samples[("shortlist_cache_requests_total", (similar, ("result", "miss")))] == 1
    assert samples[("shortlist_degraded_responses_total", ())] == 0
    version = (await gql(client, RECS, u="u0001"))["data"]["recommendations"]["modelVersion"]
    assert samples[("shortlist_model_version", (("version", version),))] == 1


async def test_a_late_stage_and_source_count_as_timeouts_and_degraded(
    built_catalog: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = {
        **RELAXED,
        "ranking_ms": 100,
        "candidates": {**RELAXED["candidates"], "cf_ann": {"deadline_ms": 100}},
    }
    delay = {"delay_ms": 3000}
    settings = Settings(
        db_path=built_catalog, pipeline=pipeline, faults={"cf_ann": delay, "ranking": delay}
    )
    async for client in _client(settings):
        with caplog.at_level(logging.INFO, logger="shortlist.requests"):
            answer = (await gql(client, RECS, u="u0001"))["data"]["recommendations"]
        assert answer["degraded"] is True
        samples = _samples((await client.get("/metrics")).text)
    assert samples[("shortlist_stage_timeouts_total", (("stage", "ranking"),))] == 1
    assert samples[("shortlist_source_timeouts_total", (("source", "cf_ann"),))] == 1
    assert ("shortlist_source_timeouts_total", (("source", "popular"),)) not in samples
    assert samples[("shortlist_degraded_responses_total", ())] == 1

    # one log line for the request, with the requestId the client was answered with
    [record] = [r for r in caplog.records if r.name == "shortlist.requests"]
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == answer["requestId"]
    assert (line["operation"], line["status"], line["degraded"]) == ("recommendations", 200, True)
    assert line["level"] == "INFO" and line["duration_ms"] > 0


async def test_a_replica_pins_its_version_and_keeps_serving_if_a_pin_cannot_load(
    live_root: Path, redis_server: str, redis_namespace: str
) -> None:
    settings = Settings(
        db_path=live_root, pipeline=RELAXED, redis_url=redis_server, redis_namespace=redis_namespace
    )
    shared = redis.from_url(redis_server, decode_responses=True)
    try:
        async for client in _client(settings):
            version = (await client.get("/readyz")).json()["modelVersion"]
            assert await shared.get(f"{redis_namespace}:version") == version, "pinned at start"
            await shared.set(f"{redis_namespace}:version", "v29990101-000000-999")  # not on disk
            answer = await gql(client, RECS, u="u0001")
            assert "errors" not in answer, answer
            assert answer["data"]["recommendations"]["modelVersion"] == version
    finally:
        await shared.aclose()
