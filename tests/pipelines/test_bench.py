import time
from pathlib import Path

from app.store import CatalogRoot
from pipelines.bench import drop_cached, markdown, stage_latency
from tests.page_cache import cached_bytes


def test_bench_reports_every_stage(built_catalog: Path) -> None:
    report = stage_latency(built_catalog, requests=15)
    assert report["requests"] == 15
    assert {"candidates", "ranking", "reranking", "source:cf_ann"} <= set(report["stages"])
    for values in [report["total"], *report["stages"].values()]:
        assert 0 <= values["p50_ms"] <= values["p99_ms"]
    # CPU time per request: some of every answer, and at most what two cores give in its time
    assert 0 < report["cpu"]["p50_ms"] <= 2 * report["total"]["max_ms"] + 1
    table = markdown(report)
    assert "| candidates |" in table and "total (server-side)" in table
    assert f"| CPU time of the process | {report['cpu']['p50_ms']} |" in table
    reference = report["machine_reference"]
    assert reference["python_ms"] > 0 and reference["numpy_ms"] > 0
    assert f"Python {reference['python_ms']} ms" in table


def test_a_cold_bench_drops_the_version_from_the_page_cache_and_measures_every_request(
    built_catalog: Path,
) -> None:
    version = CatalogRoot(built_catalog).open().path
    files = [p for p in version.rglob("*") if p.is_file()]
    for path in files:
        path.read_bytes()  # all cached
    assert drop_cached(version) == sum(p.stat().st_size for p in files)
    # (no other process maps them; on a loaded machine the kernel may keep a page that is
    # still on another CPU's LRU batch, so a second ask is allowed, as a cold bench could too)
    if sum(cached_bytes(p) for p in files):
        time.sleep(0.5)
        drop_cached(version)
    assert sum(cached_bytes(p) for p in files) == 0

    report = stage_latency(built_catalog, requests=5, cold=True)
    assert report["cold"] and report["dropped_bytes"] > 0
    assert report["load_s"] > 0
    assert min(report["major_faults"].values()) >= 0
    table = markdown(report)
    assert "Cold: " in table and f"Loaded in {report['load_s']} s" in table
    assert "Cold: " not in markdown(stage_latency(built_catalog, requests=5))
