"""The `shortlist` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from app.errors import ShortlistError
from app.settings import Settings
from pipelines.steps import Reporter

cli = typer.Typer(
    name="shortlist",
    help="Shortlist: a three-stage recommendation engine served as a GraphQL API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)
DbOption = Annotated[
    Path | None, typer.Option(help="Catalog root (default data/shortlist.lancedb).")
]


def _settings(**overrides: object) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ShortlistError(f"invalid settings: {problems}") from None


@cli.command()
def generate(
    items: Annotated[int, typer.Option(help="Number of items.", min=1)],
    users: Annotated[int, typer.Option(help="Number of users.", min=1)],
    out: Annotated[Path, typer.Option(help="Directory to write items/events parquet into.")],
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same catalog.")] = 42,
    with_vectors: Annotated[
        bool, typer.Option("--with-vectors", help="Write 384-d content vectors into items.parquet.")
    ] = False,
) -> None:
    """Generate a synthetic catalog in the generic format."""
    from pipelines.generate import generate_catalog

    result = generate_catalog(
        out, items=items, users=users, seed=seed, with_vectors=with_vectors, reporter=Reporter()
    )
    err.print(
        f"[bold green]generated[/] {result.n_items:,} items, {result.n_users:,} users, "
        f"{result.n_events:,} events in {out}"
    )


@cli.command()
def build(
    source: Annotated[Path, typer.Option(help="Source directory (MovieLens or generic).")],
    format: Annotated[str, typer.Option("--format", help="movielens or generic.")],
    db: DbOption = None,
) -> None:
    """Ingest, embed, train CF, compute statistics, write LanceDB tables and indexes, publish."""
    from pipelines.build import build as run_build

    settings = _settings(db_path=db)
    manifest = run_build(source, format, settings, Reporter())
    total = next(s["seconds"] for s in manifest.steps if s["name"] == "total")
    err.print(
        f"[bold green]built[/] {manifest.version} in {settings.db_path} "
        f"({manifest.counts['items']:,} items, {manifest.counts['users']:,} users, "
        f"{manifest.counts['events']:,} events) in {total:.1f} s"
    )


@cli.command()
def reindex(db: DbOption = None) -> None:
    """Choose the serving version's ANN indexes again (measured against exact search), without
    rebuilding it; a running server picks them up on reloadModels or SIGHUP."""
    from pipelines.reindex import reindex as run_reindex

    settings = _settings(db_path=db)
    for column, choice in run_reindex(settings, Reporter()).items():
        err.print(f"[bold green]{column}[/]: {choice.kind} {choice.search}")


@cli.command()
def serve(
    db: DbOption = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[
        int,
        typer.Option(
            help="Worker processes on one socket (replicas of one another: more than one needs "
            "SHORTLIST_REDIS_URL).",
            min=1,
            max=64,
        ),
    ] = 1,
) -> None:
    """Serve the GraphQL API (and GraphiQL) at http://HOST:PORT/graphql."""
    from app.store import CatalogRoot
    from pipelines.serve import serve as run_server

    given = {"db_path": db, "host": host, "port": port}
    settings = _settings(**given)
    CatalogRoot(settings.db_path).open()  # fail fast, with one clear message, before uvicorn
    for name, value in given.items():  # worker processes read their settings from here
        if value is not None:
            os.environ[f"SHORTLIST_{name.upper()}"] = str(value)
    err.print(
        f"[bold green]starting[/] on http://{settings.host}:{settings.port}/graphql"
        f"{' (GraphiQL)' if settings.graphiql else ''}"
        f"{f' with {workers} workers' if workers > 1 else ''}"
    )
    run_server(settings, workers)


@cli.command()
def bench(
    db: DbOption = None,
    requests: Annotated[
        int, typer.Option(help="Measured requests (after a warm-up).", min=1)
    ] = 500,
    explain: Annotated[bool, typer.Option("--explain", help="Ask for explanations too.")] = False,
    cold: Annotated[
        bool,
        typer.Option(
            "--cold",
            help="Drop the serving version's files from the page cache first (as after a "
            "reboot) and measure from the first request after the load (the bench sends no "
            "warm-up of its own).",
        ),
    ] = False,
    realtime: Annotated[
        bool,
        typer.Option(
            "--realtime",
            help="Instead: event ingest throughput, event-to-effect time and fold-in quality "
            "(on a scratch live database; the catalog is not written to).",
        ),
    ] = False,
    faults: Annotated[
        bool,
        typer.Option(
            "--faults",
            help="Instead: the latency with each fault point in turn delayed by 5 s (test-only "
            "fault injection), and how many answers were degraded.",
        ),
    ] = False,
    scale: Annotated[
        bool,
        typer.Option(
            "--scale",
            help="Instead: generate (--items, --users) and build a catalog under --work unless "
            "there, then measure per-stage latency (explain off and on), ANN recall against "
            "exact search, HTTP load with wrk, build time and peak RSS; writes bench.json, "
            "bench.md and latency-vs-load.png into --report-dir.",
        ),
    ] = False,
    items: Annotated[int, typer.Option(help="--scale: items to generate.", min=1)] = 1_000_000,
    users: Annotated[int, typer.Option(help="--scale: users to generate.", min=1)] = 100_000,
    work: Annotated[
        Path, typer.Option(help="--scale: directory for the generated source and catalog.")
    ] = Path("data/scale"),
    report_dir: Annotated[
        Path, typer.Option(help="--scale: where the JSON, Markdown and PNG go.")
    ] = Path("data/scale/report"),
    ann_queries: Annotated[int, typer.Option(help="--scale: ANN probe queries.", min=1)] = 200,
    http_seconds: Annotated[
        float, typer.Option(help="--scale: wrk duration per concurrency.", min=1)
    ] = 20.0,
    concurrency: Annotated[
        str, typer.Option(help="--scale: wrk connection counts, comma-separated.")
    ] = "1,4,8,16,32,64",
    http_workers: Annotated[
        int,
        typer.Option(
            help="--scale: also load `serve --workers N` (replicas on one socket and one "
            "redis-server the bench starts); 1: one process only.",
            min=1,
            max=64,
        ),
    ] = 2,
    seed: Annotated[int, typer.Option(help="Seed for the catalog and the sampled users.")] = 42,
    out: Annotated[Path | None, typer.Option(help="Write the report as JSON here.")] = None,
) -> None:
    """Per-stage latency of the served pipeline, in-process, on a built catalog."""
    settings = _settings(db_path=db)
    if scale:
        from pipelines.bench_report import markdown as scale_markdown
        from pipelines.bench_scale import scale_bench

        try:
            levels = tuple(int(c) for c in concurrency.split(",") if c.strip())
        except ValueError:
            raise ShortlistError(f"--concurrency must be integers, got {concurrency!r}") from None
        report = scale_bench(
            work,
            report_dir,
            items=items,
            users=users,
            requests=requests,
            ann_queries=ann_queries,
            http_seconds=http_seconds,
            concurrency=levels,
            seed=seed,
            http_workers=http_workers,
        )
        typer.echo(scale_markdown(report))
    elif faults:
        from pipelines.bench import fault_markdown, fault_sweep

        report = fault_sweep(settings.db_path, min(requests, 100))
        typer.echo(fault_markdown(report))
    elif realtime:
        from pipelines import bench_realtime

        report = bench_realtime.realtime_bench(settings.db_path)
        typer.echo(bench_realtime.markdown(report))
    else:
        from pipelines.bench import markdown, stage_latency

        report = stage_latency(settings.db_path, requests, explain, cold=cold)
        typer.echo(markdown(report))
    if out is not None:
        out.write_text(json.dumps(report, indent=2))


@cli.command("load-test")
def load_test(
    db: DbOption = None,
    clients: Annotated[int, typer.Option(help="Concurrent clients.", min=1)] = 50,
    seconds: Annotated[float, typer.Option(help="How long they run.", min=1)] = 60.0,
    events_share: Annotated[
        float, typer.Option(help="Share of calls that are recordEvents.", min=0, max=1)
    ] = 0.3,
    fault: Annotated[
        str,
        typer.Option(help="SHORTLIST_FAULTS for the server, as JSON ('{}': none)."),
    ] = '{"cf_ann": {"delay_ms": 500}}',
    out: Annotated[Path | None, typer.Option(help="Write the report as JSON here.")] = None,
) -> None:
    """A real server under concurrent queries and events with a fault injected: status codes,
    errors by code, latencies, and every acknowledged event looked for afterwards (on a scratch
    live database; the catalog is not written to)."""
    from pipelines.load_test import load_test as run_load_test
    from pipelines.load_test import markdown

    settings = _settings(db_path=db)
    try:
        faults = json.loads(fault)
        _settings(faults=faults)  # names a real fault point
    except json.JSONDecodeError as exc:
        raise ShortlistError(f"--fault is not JSON: {exc}") from None
    report = run_load_test(settings.db_path, clients, seconds, events_share, faults)
    typer.echo(markdown(report))
    if out is not None:
        out.write_text(json.dumps(report, indent=2))
    if report["server_errors"] or report["events_lost"] or report["events_lost_after_restart"]:
        raise ShortlistError("server errors or lost events: see the report above")


@cli.command()
def evaluate(
    source: Annotated[Path, typer.Option(help="Source directory (MovieLens or generic).")],
    format: Annotated[str, typer.Option("--format", help="movielens or generic.")],
    k: Annotated[int, typer.Option(help="Cut-off of the ranking metrics.", min=1, max=200)] = 10,
    out: Annotated[Path, typer.Option(help="Directory for the report.")] = Path("data/evaluation"),
    deadlines: Annotated[
        str,
        typer.Option(
            help="lifted: no source or stage drops out, so accuracy does not depend on how busy "
            "the machine is; served: the server's deadlines."
        ),
    ] = "lifted",
) -> None:
    """Hold out each user's latest events; compare the served pipeline with baselines."""
    from pipelines.evaluation.report import markdown
    from pipelines.evaluation.run import DEADLINES
    from pipelines.evaluation.run import evaluate as run_evaluation

    if deadlines not in DEADLINES:
        choices = ", ".join(DEADLINES)
        raise ShortlistError(f"--deadlines must be one of {choices}, not {deadlines!r}")
    report = run_evaluation(source, format, out, k, _settings(), Reporter(), deadlines)
    typer.echo(markdown(report))
    err.print(f"[bold green]wrote[/] {out}/evaluation.json, evaluation.md, evaluation.png")


@cli.command()
def info(
    db: DbOption = None,
) -> None:
    """Print the serving version's manifest as JSON."""
    from app.store import CatalogRoot

    settings = _settings(db_path=db)
    version = CatalogRoot(settings.db_path).open()
    typer.echo(json.dumps(version.manifest.model_dump(mode="json"), indent=2))


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("LANCE_LOG", "error")
    os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")  # index stats, no warning
    try:
        cli()
    except ShortlistError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("[bold red]interrupted[/]")
        sys.exit(130)
    except MemoryError:
        err.print("[bold red]error:[/] out of memory")
        sys.exit(1)


if __name__ == "__main__":
    main()
