"""A small `shortlist load-test`: a real server, concurrent queries and events, a fault."""

from __future__ import annotations

from pathlib import Path

from pipelines.load_test import load_test


def test_under_load_with_a_fault_nothing_fails_and_nothing_is_lost(built_catalog: Path) -> None:
    report = load_test(
        built_catalog, clients=6, seconds=4, faults={"content_ann": {"delay_ms": 500}}
    )
    assert report["calls"]["query"] > 0 and report["events_acknowledged"] > 0
    assert report["server_errors"] == 0 and report["transport_errors"] == 0
    assert set(report["statuses"]) == {"200"}
    assert report["degraded_answers"] == report["calls"]["query"], "the fault shows"
    assert report["events_found"] == report["events_acknowledged"]
    assert report["events_lost"] == 0 and report["events_lost_after_restart"] == 0
    after = report["users_after_restart"]
    assert after["users"] > 0 and after["matching"] == after["users"]
    assert report["server_tracebacks"] == 0
