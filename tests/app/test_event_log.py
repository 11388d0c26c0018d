"""The durable event log on a real LanceDB directory: group commit, order, failure, reopen."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.realtime.event_log import EventLog
from app.realtime.live_store import EVENTS, LiveDatabase, LiveStoreError, TableSync
from app.realtime.records import LiveEvent


def event(user: str, item: str = "i1", kind: str = "view", weight: float = 1.0) -> LiveEvent:
    return LiveEvent(user, item, kind, None, weight, 1_700_000_000_000, 1_700_000_000_000)


async def open_log(path: Path, applied: list[LiveEvent], **options: object) -> EventLog:
    database = await LiveDatabase.open(path)
    log = await EventLog.open(
        database,
        fsync=bool(options.get("fsync", True)),
        compact_every=int(options.get("compact_every", 1000)),  # type: ignore[call-overload]
    )
    log.start(applied.extend)
    return log


async def test_acknowledged_events_are_applied_stored_and_numbered(tmp_path) -> None:
    applied: list[LiveEvent] = []
    log = await open_log(tmp_path, applied)
    written = await log.append([event("a"), event("b", kind="dismiss", weight=0.0)])
    assert [e.seq for e in written] == [0, 1]
    assert applied == written, "applied before the call is answered"
    assert [e.seq for e in await log.append([event("c")])] == [2]
    await log.close()

    reopened = await open_log(tmp_path, [])
    assert reopened.next_seq == 3
    stored = await reopened.read_after(-1)
    assert [(e.seq, e.user_id, e.event, e.weight) for e in stored] == [
        (0, "a", "view", 1.0),
        (1, "b", "dismiss", 0.0),
        (2, "c", "view", 1.0),
    ]
    assert [e.seq for e in await reopened.read_after(1)] == [2]
    await reopened.close()


async def test_concurrent_calls_share_appends_and_keep_one_order(tmp_path) -> None:
    applied: list[LiveEvent] = []
    log = await open_log(tmp_path, applied)
    calls = [[event(f"u{n}"), event(f"u{n}", "i2")] for n in range(60)]
    results = await asyncio.gather(*(log.append(c) for c in calls))
    seqs = sorted(e.seq for r in results for e in r)
    assert seqs == list(range(120))
    assert [e.seq for e in applied] == list(range(120)), "applied in sequence order"
    for call, result in zip(calls, results, strict=True):
        assert [e.user_id for e in result] == [e.user_id for e in call]
        assert result[1].seq == result[0].seq + 1, "a call's events stay together"
    assert log.appends < 60, "waiting calls were committed together"
    assert await log.count() == 120
    await log.close()


async def test_a_failed_write_acknowledges_and_applies_nothing(tmp_path, monkeypatch) -> None:
    applied: list[LiveEvent] = []
    log = await open_log(tmp_path, applied)
    real_add = log.table.add

    async def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(log.table, "add", broken)
    with pytest.raises(LiveStoreError, match="not stored"):
        await log.append([event("a")])
    assert applied == []
    monkeypatch.setattr(log.table, "add", real_add)
    assert len(await log.append([event("b")])) == 1
    assert [e.user_id for e in await log.read_after(-1)] == ["b"]
    await log.close()


async def test_compaction_keeps_every_event(tmp_path) -> None:
    log = await open_log(tmp_path, [], compact_every=1000)
    for n in range(12):
        await log.append([event(f"u{n}")])
    fragments = len(list((tmp_path / f"{EVENTS}.lance" / "data").iterdir()))
    await log.compact()
    assert [e.user_id for e in await log.read_after(-1)] == [f"u{n}" for n in range(12)]
    versions = await log.table.list_versions()
    assert fragments >= 12 and len(versions) >= 1
    await log.close()


async def test_table_sync_syncs_only_new_files(tmp_path) -> None:
    log = await open_log(tmp_path, [], fsync=False)
    sync = TableSync(tmp_path / f"{EVENTS}.lance")
    assert await sync() == 0
    await log.append([event("a")])
    assert await sync() >= 2, "a data file and a manifest at least"
    assert await sync() == 0
    await log.close()


async def test_closed_log_refuses(tmp_path) -> None:
    log = await open_log(tmp_path, [])
    await log.close()
    with pytest.raises(LiveStoreError, match="closed"):
        await log.append([event("a")])
