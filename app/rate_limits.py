"""Rate limits per client: a token bucket per API key (or address), for queries and for events.

Two budgets, each `rate` tokens per second on average and `burst` at once: queries (every
top-level field of a query costs one) and events (every event of a recordEvents call costs one,
whichever users it is for; the per-user limit of `app.realtime.intake` applies on top). A client
is the configured key it presents (`app.access.client_of`), else its address.

A refusal is `RateLimited`, saying how long until the cost would be available. The buckets live
in this process's memory; `BucketStore` is the seam where a shared store (e.g. Redis, so that
several server processes share one budget) replaces `MemoryBuckets`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from app.errors import RateLimited
from app.settings import Settings

MAX_TRACKED = 100_000  # buckets kept before the full ones are forgotten


class BucketStore(Protocol):
    def take(self, key: str, cost: float, rate: float, burst: float, now: float) -> float:
        """Take `cost` tokens from bucket `key` (refilled at `rate`/s up to `burst`).

        Returns 0.0 when taken, else the seconds until `cost` tokens would be there (nothing is
        taken then)."""
        ...


class MemoryBuckets:
    """Token buckets in a dict: (tokens, when last updated) per key."""

    def __init__(self, max_tracked: int = MAX_TRACKED) -> None:
        self.max_tracked = max_tracked
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, cost: float, rate: float, burst: float, now: float) -> float:
        tokens, at = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + max(0.0, now - at) * rate)
        if tokens >= cost:
            self._buckets[key] = (tokens - cost, now)
            if len(self._buckets) > self.max_tracked:
                self._forget_full(now, rate, burst)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (cost - tokens) / rate

    def _forget_full(self, now: float, rate: float, burst: float) -> None:
        """Drop buckets that have refilled since: they behave exactly like absent ones."""
        refill = burst / rate
        self._buckets = {k: b for k, b in self._buckets.items() if now - b[1] < refill}


@dataclass(frozen=True)
class Budget:
    name: str  # "queries" or "events": names the bucket and the error
    rate: float  # tokens per second; 0: unlimited
    burst: int
    setting: str  # the setting that raises it, named in the refusal


class RateLimits:
    def __init__(
        self,
        queries: Budget,
        events: Budget,
        store: BucketStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queries = queries
        self.events = events
        self.store = store or MemoryBuckets()
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, store: BucketStore | None = None) -> RateLimits:
        return cls(
            Budget(
                "queries",
                settings.query_rate_per_client,
                settings.query_burst_per_client,
                "SHORTLIST_QUERY_RATE_PER_CLIENT",
            ),
            Budget(
                "events",
                settings.event_rate_per_client,
                settings.event_burst_per_client,
                "SHORTLIST_EVENT_RATE_PER_CLIENT",
            ),
            store,
        )

    def charge(self, budget: Budget, client: str, cost: int) -> None:
        """Take `cost` from the client's bucket of `budget`, or raise RateLimited.

        A cost above the burst is charged as the whole burst: such a call waits for a full
        bucket rather than never passing."""
        if budget.rate <= 0 or cost <= 0:
            return
        wait = self.store.take(
            f"{budget.name}:{client}",
            min(float(cost), budget.burst),
            budget.rate,
            float(budget.burst),
            self.clock(),
        )
        if wait > 0:
            raise RateLimited(
                f"too many {budget.name} from this client: {budget.rate:g}/s on average, bursts "
                f"of {budget.burst} ({budget.setting}); retry in {math.ceil(wait)} s",
                wait,
            )
