"""Rate limits per client: a token bucket per API key (or address), for queries and for events.

Two budgets, each `rate` tokens per second on average and `burst` at once: queries (every
top-level field of a query costs one) and events (every event of a recordEvents call costs one,
whichever users it is for; the per-user limit of `app.realtime.intake` applies on top). A client
is the configured key it presents (`app.access.client_of`), else its address.

A refusal is `RateLimited`, saying how long until the cost would be available. The buckets live
in this process's memory (`MemoryBuckets`), or in Redis when SHORTLIST_REDIS_URL is set
(`RedisBuckets`: one Lua script per charge, on Redis's clock), so that replicas and `serve
--workers` processes share one budget per client instead of each granting it in full. A Redis
that cannot be reached falls back on this process's own buckets (logged) rather than refusing.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as redis

from app.errors import RateLimited
from app.settings import Settings

log = logging.getLogger("shortlist.rate_limits")

MAX_TRACKED = 100_000  # buckets kept before the full ones are forgotten


class BucketStore(Protocol):
    async def take(self, key: str, cost: float, rate: float, burst: float, now: float) -> float:
        """Take `cost` tokens from bucket `key` (refilled at `rate`/s up to `burst`).

        Returns 0.0 when taken, else the seconds until `cost` tokens would be there (nothing is
        taken then)."""
        ...

    async def grant(
        self, wanted: dict[str, int], rate: float, burst: float, now: float
    ) -> dict[str, int]:
        """Take up to `wanted[key]` whole tokens from each bucket; how many each gave."""
        ...

    async def close(self) -> None: ...


class MemoryBuckets:
    """Token buckets in a dict: (tokens, when last updated) per key."""

    def __init__(self, max_tracked: int = MAX_TRACKED) -> None:
        self.max_tracked = max_tracked
        self._buckets: dict[str, tuple[float, float]] = {}

    async def take(self, key: str, cost: float, rate: float, burst: float, now: float) -> float:
        return self.take_now(key, cost, rate, burst, now)

    async def grant(
        self, wanted: dict[str, int], rate: float, burst: float, now: float
    ) -> dict[str, int]:
        return self.grant_now(wanted, rate, burst, now)

    async def close(self) -> None:
        return None

    def take_now(self, key: str, cost: float, rate: float, burst: float, now: float) -> float:
        tokens = self._refilled(key, rate, burst, now)
        if tokens >= cost:
            self._keep(key, tokens - cost, now, rate, burst)
            return 0.0
        self._keep(key, tokens, now, rate, burst)
        return (cost - tokens) / rate

    def grant_now(
        self, wanted: dict[str, int], rate: float, burst: float, now: float
    ) -> dict[str, int]:
        granted = {}
        for key, count in wanted.items():
            tokens = self._refilled(key, rate, burst, now)
            granted[key] = min(count, int(tokens))
            self._keep(key, tokens - granted[key], now, rate, burst)
        return granted

    def _refilled(self, key: str, rate: float, burst: float, now: float) -> float:
        tokens, at = self._buckets.get(key, (burst, now))
        return min(burst, tokens + max(0.0, now - at) * rate)

    def _keep(self, key: str, tokens: float, now: float, rate: float, burst: float) -> None:
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_tracked:
            self._forget_full(now, rate, burst)

    def _forget_full(self, now: float, rate: float, burst: float) -> None:
        """Drop buckets that have refilled since: they behave exactly like absent ones."""
        refill = burst / rate
        self._buckets = {k: b for k, b in self._buckets.items() if now - b[1] < refill}


# Both scripts: KEYS[1] is the bucket; ARGV[1] what is asked, ARGV[2] rate, ARGV[3] burst. Time
# is Redis's, the same for every replica. An idle bucket expires once it would have refilled: an
# absent bucket is a full one. `_REFILL` brings the bucket up to now; each script's middle takes
# from `tokens`; `_STORE` writes it back.
_REFILL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local asked, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local held = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(held[1]) or burst
local at = tonumber(held[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
"""
_STORE = """
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
           'at', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
"""
# Takes `asked` tokens (the cost) or none; returns the seconds to wait as a string (0 if taken).
_TAKE = (
    _REFILL
    + """
local wait = 0
if tokens >= asked then tokens = tokens - asked else wait = (asked - tokens) / rate end
"""
    + _STORE
    + "return string.format('%.6f', wait)\n"
)
# Takes up to `asked` whole tokens; returns how many it took.
_GRANT = (
    _REFILL
    + """
local granted = math.min(asked, math.floor(tokens))
tokens = tokens - granted
"""
    + _STORE
    + "return granted\n"
)


class RedisBuckets:
    """Token buckets in Redis hashes under `<namespace>:rate:<key>`, shared by replicas."""

    def __init__(self, client: Any, namespace: str) -> None:
        self.client = client
        self.prefix = f"{namespace}:rate:"
        self.script = client.register_script(_TAKE)
        self.granting = client.register_script(_GRANT)
        self.fallback = MemoryBuckets()  # while Redis cannot be reached
        self._reachable = True

    @classmethod
    def connect(cls, url: str, namespace: str) -> RedisBuckets:
        return cls(redis.from_url(url, decode_responses=True), namespace)

    async def take(self, key: str, cost: float, rate: float, burst: float, now: float) -> float:
        try:
            wait = float(await self.script(keys=[self.prefix + key], args=[cost, rate, burst]))
        except (redis.RedisError, OSError) as exc:
            self._unreachable(exc)
            return self.fallback.take_now(key, cost, rate, burst, now)
        self._reachable = True
        return wait

    async def grant(
        self, wanted: dict[str, int], rate: float, burst: float, now: float
    ) -> dict[str, int]:
        """One round trip for every bucket (a pipeline of scripts)."""
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key, count in wanted.items():
                    keys, args = [self.prefix + key], [count, rate, burst]
                    await self.granting(keys=keys, args=args, client=pipe)
                given = await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._unreachable(exc)
            return self.fallback.grant_now(wanted, rate, burst, now)
        self._reachable = True
        return {key: int(count) for key, count in zip(wanted, given, strict=True)}

    def _unreachable(self, exc: BaseException) -> None:
        if self._reachable:
            log.warning("rate limits: Redis unreachable, this process counts alone: %s", exc)
            self._reachable = False

    async def close(self) -> None:
        await self.client.aclose()


def shared_buckets(settings: Settings) -> BucketStore:
    """Buckets every replica shares (Redis) when SHORTLIST_REDIS_URL is set, else this process's."""
    if settings.redis_url is None:
        return MemoryBuckets()
    return RedisBuckets.connect(settings.redis_url, settings.redis_namespace)


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
        """The configured budgets, in Redis when SHORTLIST_REDIS_URL is set (else in memory)."""
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
            store or shared_buckets(settings),
        )

    async def close(self) -> None:
        await self.store.close()

    async def charge(self, budget: Budget, client: str, cost: int) -> None:
        """Take `cost` from the client's bucket of `budget`, or raise RateLimited.

        A cost above the burst is charged as the whole burst: such a call waits for a full
        bucket rather than never passing."""
        if budget.rate <= 0 or cost <= 0:
            return
        wait = await self.store.take(
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
