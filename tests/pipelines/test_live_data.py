"""The next build takes in what the server was told: upserted items, live events, a watermark."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import numpy as np

from app.realtime.event_log import EventLog
from app.realtime.item_upserts import ItemUpserts
from app.realtime.live_store import LiveDatabase
from app.realtime.records import ItemDraft, LiveEvent
from app.store import CatalogRoot
from pipelines.bench_realtime import markdown, realtime_bench
from pipelines.ingest import load_source
from pipelines.live_data import with_live_data


async def _tell(root: Path, dim: int) -> None:
    database = await LiveDatabase.open(CatalogRoot(root).live_dir)
    items = ItemUpserts(database, "test-model", 1, 8)
    vectors = np.ones((2, dim), dtype=np.float32) / np.sqrt(dim)
    await items.record(
        [
            ItemDraft("i0003", "Retitled", genres=("Drama",), released=date(2020, 5, 1)),
            ItemDraft("live-new", "Brand New", "fresh text", ("Horror",), "New Saga"),
        ],
        vectors,
    )
    log = await EventLog.open(database, fsync=False, compact_every=100)
    log.start(lambda events: None)
    at = 1_750_000_000_000
    await log.append(
        [
            LiveEvent("u-live", "live-new", "purchase", None, 3.0, at, at),
            LiveEvent("u-live", "i0003", "rating", 4.5, 2.4, at + 1000, at + 1000),
            LiveEvent("u-live", "gone-item", "view", None, 1.0, at, at),
        ]
    )
    await log.close()


def test_live_items_and_events_join_the_source(generated_source: Path, tmp_path: Path) -> None:
    raw = load_source(generated_source, "generic")
    assert raw.content_vectors is not None
    dim = raw.content_vectors.shape[1]
    assert with_live_data(raw, tmp_path / "nothing-yet") == (raw, -1, {})

    asyncio.run(_tell(tmp_path, dim))
    merged, watermark, counts = with_live_data(raw, tmp_path)
    assert watermark == 2 and counts == {"live_items": 2, "live_events": 2}
    items = merged.items.set_index("item_id")
    assert len(merged.items) == len(raw.items) + 1
    assert items.loc["i0003", "title"] == "Retitled"
    assert list(items.loc["i0003", "genres"]) == ["Drama"]
    assert items.loc["live-new", "series"] == "New Saga"
    assert items.loc["live-new", "series_position"] == 1.0
    assert merged.content_vectors is not None
    assert np.allclose(merged.content_vectors[-1], 1 / np.sqrt(dim))
    position = list(merged.items["item_id"]).index("i0003")
    assert np.allclose(merged.content_vectors[position], 1 / np.sqrt(dim))
    live = merged.events[merged.events["user_id"] == "u-live"]
    assert sorted(live["item_id"]) == ["i0003", "live-new"]
    assert live["timestamp"].min() == 1_750_000_000
    assert merged.unknown_item_events == raw.unknown_item_events + 1
    assert len(merged.events) == len(raw.events) + 2


def test_realtime_bench_reports_ingest_effect_and_fold_in(built_catalog: Path) -> None:
    report = realtime_bench(
        built_catalog, singles=10, batches=1, fold_users=30, upserts=0, effect_users=5
    )
    assert [run["fsync"] for run in report["ingest"]] == [True, False]
    for run in report["ingest"]:
        assert run["single"]["events"] == 10 and run["batched"]["events"] == 1000
        assert run["batched"]["appends"] == 1
        assert run["effect"]["excluded_in_next_request"] == run["effect"]["users"]
    assert report["fold_in"]["users"] > 0
    assert "| on | single |" in markdown(report)
    live = CatalogRoot(built_catalog).live_dir / "events.lance"
    assert not live.exists() or not list((live / "data").glob("*")), "scratch roots only"


def test_upserted_items_merge_into_a_new_mapped_file(
    generated_source: Path, tmp_path: Path
) -> None:
    """In a build (a scratch directory) the merged vectors are a new mapped file of n + m rows;
    the source's scratch file, merged, is removed."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    raw = load_source(generated_source, "generic", scratch)
    assert isinstance(raw.content_vectors, np.memmap)
    source_file = Path(str(raw.content_vectors.filename))
    assert source_file.parent == scratch
    before = np.array(raw.content_vectors)
    dim = before.shape[1]
    asyncio.run(_tell(tmp_path / "root", dim))

    merged, _, counts = with_live_data(raw, tmp_path / "root", scratch)

    assert counts["live_items"] == 2
    vectors = merged.content_vectors
    assert isinstance(vectors, np.memmap) and Path(str(vectors.filename)).parent == scratch
    assert vectors.shape == (len(before) + 1, dim)
    position = list(merged.items["item_id"]).index("i0003")
    expected = np.vstack([before, np.full((1, dim), 1 / np.sqrt(dim), np.float32)])
    expected[position] = 1 / np.sqrt(dim)
    np.testing.assert_array_equal(vectors, expected)
    assert not source_file.exists()
