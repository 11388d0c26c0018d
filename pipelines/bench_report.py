"""The scale benchmark's outputs: bench.json, bench.md and latency-vs-load.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.bench import markdown as latency_markdown
from pipelines.bench_http import KNEE_MAX_DEGRADED

PNG = "latency-vs-load.png"


def markdown(report: dict[str, Any]) -> str:
    catalog = report["catalog"]
    counts = catalog["counts"]
    machine = report["machine"]
    lines = [
        f"Catalog: {counts['items']:,} items, {counts['users']:,} users, "
        f"{counts['events']:,} events (seed {catalog['seed']}); {machine['cpus']} CPUs, load "
        f"average {machine['load_average_at_start']} at the start ({machine['started']}).",
        "",
        "**Generate and build** (child processes; peak RSS from the kernel):",
        "",
        "| job | seconds | peak RSS MiB |",
        "|---|---:|---:|",
    ]
    for job in ("generate", "build"):
        if job in catalog:
            lines.append(f"| {job} | {catalog[job]['seconds']} | {catalog[job]['peak_rss_mib']} |")
        else:
            lines.append(f"| {job} | (reused) | |")
    lines += [
        "",
        "Build steps (peak RSS, and of it the process's own memory: RSS without the pages of "
        "mapped files such as the content vectors, which the kernel drops under pressure):",
        "",
        "| step | seconds | rows | peak RSS MiB | own MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for step in catalog["build_steps"]:
        lines.append(
            f"| {step['name']} | {step['seconds']} | {step['rows']:,} "
            f"| {step.get('peak_rss_mib', 0.0):,.0f} | {step.get('peak_anon_mib', 0.0):,.0f} |"
        )
    lines += ["", "**(a) Served latency, in-process, sequential** (in the order run)", ""]
    if "latency_cold" in report:  # reports before 2026-11-27 have none
        lines += [latency_markdown(report["latency_cold"]), ""]
    lines.append(latency_markdown(report["latency"]))
    lines += ["", latency_markdown(report["latency_explain"]), ""]
    off, on = report["latency"]["total"], report["latency_explain"]["total"]
    lines.append(
        f"Explain adds {on['p50_ms'] - off['p50_ms']:.2f} ms at p50. Peak RSS of the benchmark "
        f"process serving in-process: {report['serving_peak_rss_mib']:,} MiB."
    )
    lines += ["", "**(b) ANN against exact search** (user vectors as queries)", ""]
    lines += [
        "| column | index | search | queries | recall@k | min | ANN p50 ms | ANN p99 ms "
        "| exact numpy p50 ms | exact p99 ms |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for column, row in report["ann"]["columns"].items():
        k = row["k"]
        lines.append(
            f"| {column} | {row['index']} | {_params(row['search'])} | {row['queries']} | "
            f"{row[f'recall@{k}']} | {row[f'recall@{k}_min']} | {row['ann']['p50_ms']} | "
            f"{row['ann']['p99_ms']} | {row['exact_numpy']['p50_ms']} | "
            f"{row['exact_numpy']['p99_ms']} |"
        )
    lines += _http_table(
        report["http"],
        "**(c) HTTP load** (wrk, POST recommendations count 30, "
        "a user per request), one server process",
    )
    if "http_workers" in report:
        workers = report["http_workers"]
        lines += _http_table(
            workers,
            f"**(c) HTTP load, {workers.get('workers', 'several')} worker processes** "
            "(`shortlist serve --workers`: replicas on one socket, sharing one redis-server)",
        )
    return "\n".join(lines) + "\n"


def _http_table(http: dict[str, Any], title: str) -> list[str]:
    lines = ["", title, ""]
    if not http.get("available"):
        return [*lines, f"Not measured: {http.get('reason')}"]
    lines += [
        "| connections | req/s | p50 ms | p90 ms | p99 ms | requests | non-2xx "
        "| socket errors | degraded | server CPU ms/request | load (1 min) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in http["rows"]:
        lines.append(
            f"| {row['connections']} | {row['requests_per_s']:.1f} | {row.get('p50_ms')} | "
            f"{row.get('p90_ms')} | {row.get('p99_ms')} | {row['requests']:,} | "
            f"{row['non_2xx']} | {row['socket_errors']} | {row.get('degraded_share', 'n/a')} | "
            f"{row.get('server_cpu_ms_per_request', 'n/a')} | {row.get('load_1m', 'n/a')} |"
        )
    redis = [r["redis_cpu_ms_per_request"] for r in http["rows"] if "redis_cpu_ms_per_request" in r]
    lines += [
        "",
        f"Knee: {http['knee_connections']} connections (the fewest reaching 90% of the best "
        "throughput among levels with at most 1% degraded answers); "
        f"{http['seconds']:g} s per level. Server peak RSS: "
        f"{http.get('server_peak_rss_mib', 'n/a')} MiB"
        + (f"; Redis CPU {min(redis)}-{max(redis)} ms per request." if redis else "."),
    ]
    return lines


def _params(search: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in search.items()) or "-"


def plot(report: dict[str, Any], path: Path) -> None:
    """p50 and p99 against connections, and throughput on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    counts = report["catalog"]["counts"]
    ax.set_title(f"Shortlist over HTTP: {counts['items']:,} items, {counts['users']:,} users")
    runs = [(report["http"], "1 process", "o")]
    if "http_workers" in report:
        runs.append(
            (report["http_workers"], f"{report['http_workers'].get('workers')} workers", "s")
        )
    runs = [(h, name, m) for h, name, m in runs if h.get("available") and h.get("rows")]
    if runs:
        rate = ax.twinx()
        for color, (http, name, marker) in zip(("C0", "C1"), runs, strict=False):
            rows = http["rows"]
            x = [r["connections"] for r in rows]
            p99 = [r.get("p99_ms") for r in rows]
            ax.plot(x, p99, f"{marker}-", color=color, label=f"p99, {name}")
            rate.plot(
                x,
                [r["requests_per_s"] for r in rows],
                f"{marker}--",
                color=color,
                label=f"req/s, {name}",
            )
            late = [r for r in rows if r.get("degraded_share", 0.0) > KNEE_MAX_DEGRADED]
            if late:  # throughput bought with degraded answers: circled in red
                rate.plot(
                    [r["connections"] for r in late],
                    [r["requests_per_s"] for r in late],
                    "o",
                    markersize=12,
                    markerfacecolor="none",
                    markeredgecolor="red",
                    label=f"over 1% degraded, {name}",
                )
            knee = http.get("knee_connections")
            if knee is not None:
                ax.axvline(knee, linestyle=":", color="red", label=f"knee, {name} ({knee})")
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [str(c) for c in x])
        ax.set_xlabel("concurrent connections (wrk)")
        ax.set_ylabel("p99 latency ms")
        rate.set_ylabel("requests per second")
        rate.set_ylim(bottom=0)
        handles = ax.get_legend_handles_labels()[0] + rate.get_legend_handles_labels()[0]
        ax.legend(handles=handles, loc="upper left", fontsize=7)
    else:
        ax.text(0.5, 0.5, "HTTP load not measured (no wrk)", ha="center", transform=ax.transAxes)
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    (out / "bench.md").write_text(markdown(report))
    plot(report, out / PNG)
