"""Each build step records the resident memory it held, so a build shows which step holds what."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from app.store import CatalogRoot
from pipelines.resident_memory import PeakResident, resident, set_aside
from pipelines.steps import Reporter


def test_resident_reads_the_process_status() -> None:
    now = resident()
    assert 0 < now.rss <= now.hwm


def test_a_step_records_the_peak_it_reached_and_what_it_kept() -> None:
    reporter = Reporter(quiet=True)
    with reporter.step("allocate"):
        held = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, touched
        # held across samples: the process's high-water mark may already lie above it
        time.sleep(0.35)
        del held
    with reporter.step("keep"):
        kept = np.ones(32 * 1024 * 1024 // 8)
    allocate, keep = reporter.timings
    assert allocate.peak_rss_mib >= allocate.rss_mib + 60  # the 64 MiB were freed by its end
    assert keep.rss_mib >= allocate.rss_mib + 30
    assert keep.peak_rss_mib >= keep.rss_mib
    del kept


def test_a_peak_below_the_processs_high_water_mark_is_sampled() -> None:
    big = np.ones(96 * 1024 * 1024 // 8)
    del big  # the high-water mark now lies above anything the block below holds
    with PeakResident(every=0.01) as peak:
        held = np.ones(48 * 1024 * 1024 // 8)
        before = resident().rss
        time.sleep(0.1)
        del held
    assert peak.mib >= before - 1
    assert peak.end_mib < before


def test_the_manifest_steps_carry_resident_memory(built_catalog: Path) -> None:
    steps = CatalogRoot(built_catalog).open().manifest.steps
    for step in steps[:-1]:
        assert step["peak_rss_mib"] > 0 and 0 < step["rss_mib"] <= step["peak_rss_mib"]
    total = steps[-1]
    assert total["name"] == "total"
    assert total["peak_rss_mib"] >= max(s["peak_rss_mib"] for s in steps[:-1])


def test_the_own_memory_peak_leaves_out_the_pages_of_a_mapped_file(tmp_path: Path) -> None:
    """A mapped file read whole raises the resident set, not the process's own memory; an
    array allocated and filled raises both."""
    np.save(tmp_path / "m.npy", np.ones(64 * 1024 * 1024 // 8))
    mapped = np.load(tmp_path / "m.npy", mmap_mode="r")
    with PeakResident(every=0.01) as reading:
        start = resident()
        assert float(mapped.sum()) > 0  # every page of the file read
        time.sleep(0.05)
    assert reading.mib >= start.rss + 48
    assert reading.anon_mib < start.anon + 16
    with PeakResident(every=0.01) as allocating:
        start = resident()
        held = np.ones(64 * 1024 * 1024 // 8)
        time.sleep(0.05)
        del held
    assert allocating.anon_mib >= start.anon + 48


def _frames() -> SimpleNamespace:
    items = pd.DataFrame(
        {
            "item_id": pd.Series(["a", "b", "c"], dtype="str"),
            "genres": [["Drama"], [], ["Comedy", "Drama"]],
            "released": pd.to_datetime(["2020-01-01", None, "2021-05-02"]).astype("datetime64[s]"),
        }
    )
    events = pd.DataFrame({"user_id": ["u", "v"], "device": ["tv", None], "value": [1.0, np.nan]})
    return SimpleNamespace(items=items, events=events, other="kept")


def test_set_aside_empties_the_frames_inside_and_gives_them_back_equal(tmp_path: Path) -> None:
    holder = _frames()
    before_items, before_events = holder.items.copy(), holder.events.copy()
    with set_aside(holder, ("items", "events"), tmp_path):
        assert holder.items.empty and list(holder.items.columns) == list(before_items.columns)
        assert holder.events.empty and holder.other == "kept"
        assert (tmp_path / "set_aside.pickle").exists()
    pd.testing.assert_frame_equal(holder.items, before_items)
    pd.testing.assert_frame_equal(holder.events, before_events)
    assert list(tmp_path.iterdir()) == []


def test_set_aside_gives_the_frames_back_when_the_block_fails(tmp_path: Path) -> None:
    holder = _frames()
    before = holder.items.copy()
    with pytest.raises(RuntimeError, match="step failed"), set_aside(holder, ("items",), tmp_path):
        raise RuntimeError("step failed")
    pd.testing.assert_frame_equal(holder.items, before)
    assert list(tmp_path.iterdir()) == []
