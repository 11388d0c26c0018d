from pathlib import Path

from pipelines.bench import markdown, stage_latency


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
