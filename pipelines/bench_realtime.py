"""Real-time benchmark: event ingest throughput, time from an event to its effect, fold-in quality.

Runs the real ASGI app (GraphQL included) in-process through httpx on a scratch catalog root
that links the serving version of `db` and has its own, empty live database, so the measured
catalog is never written to. Measured, with fsync of the live events on and off:

- single: one event per recordEvents call, calls one after another
- batched: 1,000 events per call
- concurrent: one event per call, 64 calls in flight (group commit shares appends)
- effect: a user views an item; the acknowledgement returns once the event is durable and
  applied, and the next request already excludes the item and shows it as an anchor

ANN latency as items arrive (a scratch copy of the version): content search before, with the
upserted items outside the index, and after the background re-index.

Fold-in quality (no server): the median cosine between a batch user's trained CF vector and the
one folded in from their batch events, and the recall@100 of a user folded in from only five
endorsed items (5 drawn at random), on their other endorsed items, against the popularity
order. The item factors were trained with those events too, so this flatters the fold-in a little.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.engine import Engine
from app.realtime.records import ItemDraft
from app.server import create_app
from app.settings import Settings
from app.store import CURRENT, CatalogRoot
from schema.http import graphql_app

KEY = "bench-key"
RECORD = "mutation($e: [EventInput!]!) { recordEvents(events: $e) { accepted } }"
RECS = """query($u: ID!) { recommendations(userId: $u, count: 30) {
  items { item { id } explain { sources { source anchorItem { id } } } } } }"""
RELAXED = {
    "budget_ms": 2000,
    "user_state_ms": 1000,
    "candidates_ms": 1500,
    "ranking_ms": 1000,
    "reranking_ms": 500,
}


def scratch_root(db: Path, scratch: Path) -> Path:
    """A catalog root whose only version is a link to `db`'s serving one; its own live/."""
    catalog = CatalogRoot(db)
    version = catalog.current()
    if version is None:
        raise SystemExit(f"no catalog at {db}")
    root = scratch / "root"
    (root / "versions").mkdir(parents=True)
    (root / "versions" / version).symlink_to((catalog.versions_dir / version).resolve())
    (root / CURRENT).write_text(version + "\n")
    return root


def _pct(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
    }


async def _ingest(
    root: Path, fsync: bool, singles: int, batches: int, effect_users: int
) -> dict[str, Any]:
    settings = Settings(
        db_path=root, api_key=KEY, events_fsync=fsync, pipeline=RELAXED, event_burst_per_user=10_000
    )
    app = create_app(settings, graphql_app(False))
    report: dict[str, Any] = {"fsync": fsync}
    async with app.router.lifespan_context(app):
        engine: Engine = app.state.engine
        items = [str(i) for i in engine.current.runtime.items.ids[:2000]]
        users = [str(u) for u in engine.current.runtime.users.index[:500]]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

            async def record(events: list[dict[str, Any]]) -> float:
                started = time.perf_counter()
                response = await client.post(
                    "/graphql",
                    json={"query": RECORD, "variables": {"e": events}},
                    headers={"x-api-key": KEY},
                )
                assert response.json()["data"]["recordEvents"]["accepted"] == len(events)
                return (time.perf_counter() - started) * 1000

            def view(n: int) -> dict[str, Any]:
                user, item = f"bench-{n % 5000}", items[n % len(items)]
                return {"userId": user, "itemId": item, "event": "VIEW"}

            async def recommend(user: str) -> list[dict[str, Any]]:
                body = {"query": RECS, "variables": {"u": user}}
                response = await client.post("/graphql", json=body)
                return response.json()["data"]["recommendations"]["items"]  # type: ignore[no-any-return]

            for n in range(min(20, singles)):  # warm-up
                await record([view(n)])

            def appends() -> int:
                return engine.live.events.appends if engine.live is not None else 0

            first = appends()
            started = time.perf_counter()
            latencies = [await record([view(n)]) for n in range(singles)]
            seconds = time.perf_counter() - started
            report["single"] = {
                "events": singles,
                "events_per_s": round(singles / seconds, 1),
                "appends": appends() - first,
            }
            report["single"].update(_pct(latencies))

            first = appends()
            started = time.perf_counter()
            per_call = [
                await record([view(b * 1000 + n) for n in range(1000)]) for b in range(batches)
            ]
            seconds = time.perf_counter() - started
            report["batched"] = {
                "events": batches * 1000,
                "events_per_s": round(batches * 1000 / seconds, 1),
                "appends": appends() - first,
            }
            report["batched"].update(_pct(per_call))

            first = appends()
            started = time.perf_counter()
            waiting = [record([view(n)]) for n in range(singles)]
            concurrent: list[float] = []
            for start in range(0, len(waiting), 64):
                concurrent += await asyncio.gather(*waiting[start : start + 64])
            seconds = time.perf_counter() - started
            report["concurrent"] = {
                "events": singles,
                "events_per_s": round(singles / seconds, 1),
                "appends": appends() - first,
            }
            report["concurrent"].update(_pct(concurrent))

            acks, befores, nexts, excluded, anchored = [], [], [], 0, 0
            for user in users[:effect_users]:
                started = time.perf_counter()
                item = (await recommend(user))[0]["item"]["id"]
                befores.append((time.perf_counter() - started) * 1000)
                acks.append(await record([{"userId": user, "itemId": item, "event": "VIEW"}]))
                started = time.perf_counter()
                picks = await recommend(user)
                nexts.append((time.perf_counter() - started) * 1000)
                excluded += item not in {p["item"]["id"] for p in picks}
                anchored += any(
                    s["anchorItem"] and s["anchorItem"]["id"] == item
                    for p in picks
                    for s in p["explain"]["sources"]
                )
            report["effect"] = {
                "users": len(users[:effect_users]),
                "excluded_in_next_request": excluded,
                "anchor_in_next_request": anchored,
                "ack": _pct(acks),
                "request_before": _pct(befores),
                "next_request": _pct(nexts),
            }
    return report


async def _fold_in_quality(db: Path, users: int, seed: int) -> dict[str, Any]:
    engine = await Engine.start(Settings(db_path=db), live=False)
    loaded = engine.current
    runtime, fold = loaded.runtime, loaded.fold_in
    assert fold is not None
    rng = np.random.default_rng(seed)
    ids = runtime.users.index
    picked = rng.choice(len(ids), size=min(users, len(ids)), replace=False)
    popularity = np.argsort(-runtime.items.popularity)[:100]
    cosines, fold_hits, pop_hits, evaluated = [], 0.0, 0.0, 0
    for row in picked.tolist():
        history = await fold.history(str(ids[row]), runtime.items)
        trained = runtime.users.cf[row]
        folded = fold.solve(history.items, history.weights)
        if folded is not None and np.any(trained):
            cosines.append(
                float(folded @ trained / np.linalg.norm(folded) / np.linalg.norm(trained))
            )
        endorsed = history.items[history.weights >= 1.0]
        if len(endorsed) < 10:
            continue
        chosen = rng.choice(len(endorsed), size=5, replace=False)
        first = endorsed[chosen]
        rest = set(np.delete(endorsed, chosen).tolist())
        vector = fold.solve(first, np.ones(len(first)))
        if vector is None:
            continue
        scores = np.take(runtime.items.cf, np.arange(len(runtime.items)), axis=0) @ vector
        scores[first] = -np.inf
        top = set(np.argpartition(-scores, 100)[:100].tolist())
        fold_hits += len(top & rest) / min(len(rest), 100)
        pop_hits += len(set(popularity.tolist()) & rest) / min(len(rest), 100)
        evaluated += 1
    await engine.close()
    return {
        "algorithm": runtime.manifest.cf.get("algorithm"),
        "users": len(cosines),
        "median_cosine_to_trained": round(float(np.median(cosines)), 4) if cosines else None,
        "new_user_5_views_recall@100": round(fold_hits / max(1, evaluated), 4),
        "popularity_recall@100": round(pop_hits / max(1, evaluated), 4),
        "new_user_users": evaluated,
    }


async def _ann_with_upserts(db: Path, scratch: Path, count: int, seed: int) -> dict[str, Any]:
    """Content ANN latency before upserts, with `count` upserted rows outside the index, and
    after the background re-index (LanceDB optimize); and the upsert rate, embedding included."""
    catalog = CatalogRoot(db)
    version = catalog.current()
    assert version is not None
    root = scratch / "ann"
    shutil.copytree(catalog.versions_dir / version, root / "versions" / version)
    (root / CURRENT).write_text(version + "\n")
    settings = Settings(db_path=root, admin_key=KEY, reindex_after_items=10**9)
    engine = await Engine.start(settings)
    items = engine.current.runtime.items
    rng = np.random.default_rng(seed)
    queries = items.content[rng.choice(len(items), size=100, replace=False)]

    async def latency() -> dict[str, float]:
        index = engine.current.runtime.content_index
        for query in queries[:10]:
            await index.nearest(query, 100)
        times = []
        for query in queries:
            started = time.perf_counter()
            await index.nearest(query, 100)
            times.append((time.perf_counter() - started) * 1000)
        return _pct(times)

    before = await latency()
    texts = rng.permutation(items.descriptions.to_numpy())
    drafts = [
        ItemDraft(f"bench-new-{n}", f"New arrival {n}", str(texts[n % len(texts)] or ""))
        for n in range(count)
    ]
    started = time.perf_counter()
    for start in range(0, count, 100):
        await engine.upsert_items(drafts[start : start + 100])
    upsert_s = time.perf_counter() - started
    outside = await latency()
    started = time.perf_counter()
    await engine.refresh_index(at_least=1)
    refresh_s = time.perf_counter() - started
    after = await latency()
    kind = engine.current.runtime.manifest.indexes["content_vector"].kind
    await engine.close()
    return {
        "index": kind,
        "items_before": len(items),
        "upserted": count,
        "upserts_per_s": round(count / upsert_s, 1),
        "refresh_s": round(refresh_s, 2),
        "before": before,
        "unindexed": outside,
        "after_refresh": after,
    }


def realtime_bench(
    db: Path,
    singles: int = 300,
    batches: int = 20,
    fold_users: int = 300,
    upserts: int = 1000,
    effect_users: int = 50,
    seed: int = 0,
) -> dict[str, Any]:
    os.environ.setdefault("LANCE_LOG", "error")
    with tempfile.TemporaryDirectory(prefix="shortlist-bench-") as scratch:
        runs = []
        for fsync in (True, False):
            root = scratch_root(db, Path(scratch) / f"fsync-{fsync}")
            runs.append(asyncio.run(_ingest(root, fsync, singles, batches, effect_users)))
        ann = asyncio.run(_ann_with_upserts(db, Path(scratch), upserts, seed)) if upserts else None
    quality = asyncio.run(_fold_in_quality(db, fold_users, seed))
    return {"db": str(db), "ingest": runs, "fold_in": quality, "ann": ann}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| fsync | mode | events | events/s | p50 ms per call | p99 ms per call | appends |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for run in report["ingest"]:
        for mode in ("single", "batched", "concurrent"):
            r = run[mode]
            lines.append(
                f"| {'on' if run['fsync'] else 'off'} | {mode} | {r['events']:,} | "
                f"{r['events_per_s']:,} | {r['p50_ms']} | {r['p99_ms']} | {r['appends']:,} |"
            )
    lines.append("")
    for run in report["ingest"]:
        e = run["effect"]
        lines.append(
            f"fsync {'on' if run['fsync'] else 'off'}: a view acknowledged in "
            f"{e['ack']['p50_ms']} ms (p99 {e['ack']['p99_ms']}), already in effect: in the next "
            f"request (30 items) the viewed item is gone for {e['excluded_in_next_request']}/"
            f"{e['users']} users and anchors a 'because you watched' pick for "
            f"{e['anchor_in_next_request']}/{e['users']}; that request took "
            f"{e['next_request']['p50_ms']} ms (p99 {e['next_request']['p99_ms']}), the one "
            f"before the event {e['request_before']['p50_ms']} ms "
            f"(p99 {e['request_before']['p99_ms']})"
        )
    a = report.get("ann")
    if a:
        lines += [
            "",
            f"content ANN ({a['index']}, {a['items_before']:,} items, k=100): p50 "
            f"{a['before']['p50_ms']} ms; with {a['upserted']:,} upserted items outside the "
            f"index {a['unindexed']['p50_ms']} ms; after the re-index ({a['refresh_s']} s) "
            f"{a['after_refresh']['p50_ms']} ms. Upserts: {a['upserts_per_s']} items/s "
            "(100 per call, embedding included)",
        ]
    q = report["fold_in"]
    lines += [
        "",
        f"fold-in ({q['algorithm']}): median cosine to the trained vector "
        f"{q['median_cosine_to_trained']} over {q['users']} users; a user folded in from 5 random "
        f"endorsed items: recall@100 of their other endorsed items "
        f"{q['new_user_5_views_recall@100']} (popularity: {q['popularity_recall@100']}, "
        f"{q['new_user_users']} users)",
    ]
    return "\n".join(lines)
