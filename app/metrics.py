"""Prometheus metrics, served at /metrics: one registry per app, fed from what requests report.

Nothing is instrumented inside the stages: every recommendation already reports each stage's and
each candidate source's time and status (`RecommendationResult.stages`), and `observe_result`
turns that report into histograms and counters. Counts that the engine keeps anyway (cache hits
and misses, events ingested, the serving version) are read when Prometheus scrapes
(`EngineCollector`), so they cost nothing per request.

    shortlist_request_seconds{operation}          GraphQL requests, by top-level field(s)
    shortlist_stage_seconds{stage}                user_state, candidates, ranking, reranking
    shortlist_source_seconds{source}              each candidate source (cf_ann, popular, ...)
    shortlist_stage_timeouts_total{stage}         a stage that ran out of time (fallback used)
    shortlist_stage_errors_total{stage}           a stage that failed (fallback used)
    shortlist_source_timeouts_total{source}       a source left out because it was late
    shortlist_source_errors_total{source}         a source left out because it failed
    shortlist_degraded_responses_total            recommendations answered with a fallback
    shortlist_cache_requests_total{cache,result}  hit | miss per cache: the hit ratio follows
    shortlist_events_ingested_total{event}        events this process stored, by type
    shortlist_model_version{version}              1 for the version being served

With `serve --workers N` the first eight are the sum over the workers (whichever answers the
scrape); the last three are the answering worker's own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as _generate
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from app.domain import RecommendationResult, StageStatus

# request latencies are budgeted at 200 ms: resolution below it, a few buckets past it
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2, 5)
SOURCE = "source:"  # how the candidate stage names its sources' reports
# set for its workers by `shortlist serve --workers N` (prometheus_client's multi-process mode):
# whichever worker answers /metrics reports the request, stage and source metrics of them all
SHARED_DIR = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r: CollectorRegistry | None = self.registry
        shared = os.environ.get(SHARED_DIR)
        if shared:  # a worker of `serve --workers`: its values go to files there, summed at scrape
            MultiProcessCollector(self.registry, path=shared)
            r = None  # registered too, they would be counted twice
        self.request_seconds = Histogram(
            "shortlist_request_seconds",
            "GraphQL request time, by top-level field(s).",
            ["operation"],
            buckets=SECONDS,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "shortlist_stage_seconds",
            "Time of a pipeline stage.",
            ["stage"],
            buckets=SECONDS,
            registry=r,
        )
        self.source_seconds = Histogram(
            "shortlist_source_seconds",
            "Time of a candidate source.",
            ["source"],
            buckets=SECONDS,
            registry=r,
        )
        self.stage_timeouts = Counter(
            "shortlist_stage_timeouts", "Stages that ran out of time.", ["stage"], registry=r
        )
        self.stage_errors = Counter(
            "shortlist_stage_errors", "Stages that failed.", ["stage"], registry=r
        )
        self.source_timeouts = Counter(
            "shortlist_source_timeouts", "Sources left out as late.", ["source"], registry=r
        )
        self.source_errors = Counter(
            "shortlist_source_errors", "Sources left out as failed.", ["source"], registry=r
        )
        self.degraded = Counter(
            "shortlist_degraded_responses",
            "Recommendations answered with a stage's or source's fallback.",
            registry=r,
        )

    def watch(self, read: Callable[[], Any]) -> None:
        """Report the engine `read()` returns (None: not started yet) at every scrape."""
        self.registry.register(EngineCollector(read))

    def observe_request(self, operation: str, seconds: float) -> None:
        self.request_seconds.labels(operation).observe(seconds)

    def observe_result(self, result: RecommendationResult) -> None:
        for report in result.stages:
            name = report.name
            if name.startswith(SOURCE):
                name = name.removeprefix(SOURCE)
                seconds, timeouts, errors = (
                    self.source_seconds,
                    self.source_timeouts,
                    self.source_errors,
                )
            else:
                seconds, timeouts, errors = (
                    self.stage_seconds,
                    self.stage_timeouts,
                    self.stage_errors,
                )
            seconds.labels(name).observe(report.ms / 1000.0)
            if report.status is StageStatus.TIMEOUT:
                timeouts.labels(name).inc()
            elif report.status is StageStatus.ERROR:
                errors.labels(name).inc()
        if result.degraded:
            self.degraded.inc()

    def exposition(self) -> bytes:
        return _generate(self.registry)


class EngineCollector(Collector):
    """What the engine counts anyway, read at scrape time."""

    def __init__(self, read: Callable[[], Any]) -> None:
        self.read = read

    def describe(self) -> list[Any]:
        return []  # no collisions to check: these names are registered nowhere else

    def collect(self) -> Iterator[Any]:
        engine = self.read()
        if engine is None:
            return
        cache = CounterMetricFamily(
            "shortlist_cache_requests", "Cache look-ups by outcome.", labels=["cache", "result"]
        )
        for counted in engine.caches.all():
            for result in ("hit", "miss"):
                cache.add_metric([counted.name, result], counted.counts[result])
        yield cache
        ingested = CounterMetricFamily(
            "shortlist_events_ingested", "Events stored by this process.", labels=["event"]
        )
        if engine.live is not None:
            for event, count in sorted(engine.live.ingested.items()):
                ingested.add_metric([event], count)
        yield ingested
        version = GaugeMetricFamily(
            "shortlist_model_version", "The catalog version being served.", labels=["version"]
        )
        version.add_metric([engine.current.runtime.version], 1)
        yield version
