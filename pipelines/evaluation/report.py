"""The evaluation report: a Markdown table and a bar chart (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def markdown(report: dict[str, Any]) -> str:
    k = report["k"]
    names = [
        f"ndcg@{k}",
        f"recall@{k}",
        f"map@{k}",
        "recall@1000",
        "coverage",
        "diversity",
        "popularity_share",
        "p50_ms",
        "p99_ms",
        "degraded",
    ]
    lines = [
        f"{report['source']} ({report['format']}): {report['test_users']} test users, "
        f"last 20% of each user's events held out. Latency: the served pipeline per request; "
        f"baselines batched, amortised per user. Deadlines: "
        + (
            "lifted (no source or stage drops out; accuracy independent of machine load)."
            if report.get("deadlines", "lifted") == "lifted"
            else "as served (late sources and stages drop out, counted as degraded)."
        ),
        "",
        "| method | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for row in report["results"]:
        cells = []
        for name in names:
            value = row.get(name)
            cells.append(
                ""
                if value is None
                else str(value)
                if isinstance(value, int)
                else f"{value:.1f}"
                if "ms" in name
                else f"{value:.4f}"
            )
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    full = next((r for r in report["results"] if r.get("sources")), None)
    if full is not None:
        lines += [
            "",
            f"What each source contributes to {full['method']}: the share of all held-out "
            "positives it found in stage 1 (an item can be found by several), and the share of "
            "shown slots it had a hit in.",
            "",
            "| source | stage-1 recall | shown share |",
            "|---|---:|---:|",
        ]
        for source, share in full["sources"].items():
            lines.append(
                f"| {source} | {share['stage1_recall']:.4f} | {share['shown_share']:.4f} |"
            )
    t = report.get("targets")
    if t:
        lines += [
            "",
            f"Targets: NDCG@{k} {t['ndcg_ratio']:.3f}x the best simple baseline "
            f"({t['best_baseline']}): {'met' if t['ndcg_target_met'] else 'NOT met'} (>= 1.10x); "
            f"stage-1 recall@1000 against {t['deepest_baseline']}'s: "
            f"{'met' if t['recall_target_met'] else 'NOT met'}.",
        ]
        for key, value in t.items():
            if key.startswith("ndcg_ratio_vs_") and value is not None:
                lines.append(f"Reference: {value:.3f}x {key.removeprefix('ndcg_ratio_vs_')}.")
    return "\n".join(lines)


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = report["k"]
    rows = sorted(report["results"], key=lambda r: r[f"ndcg@{k}"])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    colors = ["#d95f02" if r["method"].startswith("shortlist") else "#7570b3" for r in rows]
    ax.barh([r["method"] for r in rows], [r[f"ndcg@{k}"] for r in rows], color=colors)
    ax.set_xlabel(f"NDCG@{k} on held-out future interactions")
    ax.set_title(Path(report["source"]).name)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
