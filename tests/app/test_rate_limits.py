"""Token buckets per client: bursts pass, the rate holds over time, budgets and clients apart."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.access import authorize_query, client_of
from app.errors import RateLimited, Unauthenticated
from app.rate_limits import Budget, MemoryBuckets, RateLimits, RedisBuckets
from app.settings import Settings
from tests.e2e.serve import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limits(rate: float = 10.0, burst: int = 20) -> tuple[RateLimits, Clock]:
    clock = Clock()
    budgets = (Budget("queries", rate, burst, "Q"), Budget("events", rate * 100, burst * 100, "E"))
    return RateLimits(*budgets, clock=clock), clock


async def test_a_burst_passes_then_the_client_waits_for_the_rate() -> None:
    rl, clock = limits(rate=10, burst=20)
    for _ in range(20):
        await rl.charge(rl.queries, "address:a", 1)
    with pytest.raises(RateLimited) as refused:
        await rl.charge(rl.queries, "address:a", 1)
    assert refused.value.code == "RATE_LIMITED"
    assert refused.value.retry_after_s == pytest.approx(0.1)
    assert refused.value.details == {"retryAfter": 0.1}
    assert "Q" in str(refused.value), "the refusal names the setting that raises the limit"
    clock.now += 0.1
    await rl.charge(rl.queries, "address:a", 1)


async def test_clients_and_budgets_have_their_own_buckets() -> None:
    rl, _ = limits(rate=1, burst=2)
    await rl.charge(rl.queries, "address:a", 2)
    await rl.charge(rl.queries, "key:api", 2)  # another client
    await rl.charge(rl.events, "address:a", 200)  # another budget
    with pytest.raises(RateLimited):
        await rl.charge(rl.queries, "address:a", 1)


async def test_a_cost_above_the_burst_waits_for_a_full_bucket() -> None:
    rl, clock = limits(rate=10, burst=20)
    await rl.charge(rl.queries, "c", 50)  # a full bucket: passes, empties it
    with pytest.raises(RateLimited) as refused:
        await rl.charge(rl.queries, "c", 50)
    assert refused.value.retry_after_s == pytest.approx(2.0)
    clock.now += 2.0
    await rl.charge(rl.queries, "c", 50)


async def test_rate_zero_is_no_limit() -> None:
    rl, _ = limits(rate=0, burst=1)
    for _ in range(1000):
        await rl.charge(rl.queries, "c", 5)


def test_full_buckets_are_forgotten_when_many_clients_pass() -> None:
    store = MemoryBuckets(max_tracked=100)
    for n in range(500):
        assert store.take_now(f"c{n}", 1, rate=1000.0, burst=10.0, now=float(n)) == 0.0
    assert len(store._buckets) <= 101


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.floats(0, 2, allow_nan=False), st.integers(1, 15)), min_size=1, max_size=80
    ),
    rate=st.floats(0.5, 50),
    burst=st.integers(1, 40),
)
async def test_never_more_than_the_burst_plus_the_rate_over_time(steps, rate, burst) -> None:
    rl, clock = limits(rate=rate, burst=burst)
    start, taken = clock.now, 0.0
    for wait, cost in steps:
        clock.now += wait
        try:
            at_once(rl.charge(rl.queries, "c", cost))
            taken += min(cost, burst)
        except RateLimited as refused:
            assert refused.retry_after_s > 0
        assert taken <= burst + rate * (clock.now - start) + 1e-6


def at_once(charge: Coroutine[Any, Any, None]) -> None:
    """Run a charge on memory buckets, which never waits, without an event loop."""
    try:
        charge.send(None)
    except StopIteration:
        return
    raise AssertionError("memory buckets waited")


def test_queries_need_a_key_only_when_configured() -> None:
    open_ = Settings(api_key="k", admin_key="a")
    authorize_query(open_, None)
    closed = Settings(api_key="k", admin_key="a", queries_need_key=True)
    for key in ("k", "a"):
        authorize_query(closed, key)
    for key in (None, "", "wrong", "k "):
        with pytest.raises(Unauthenticated):
            authorize_query(closed, key)
    with pytest.raises(ValueError, match="no key is set"):
        Settings(queries_need_key=True)


def test_a_client_is_its_valid_key_or_else_its_address() -> None:
    s = Settings(api_key="k", admin_key="a")
    assert client_of(s, "k", "10.0.0.1") == "key:api"
    assert client_of(s, "a", "10.0.0.1") == "key:admin"
    # a made-up key buys no fresh budget: it counts against the address
    assert client_of(s, "made-up", "10.0.0.1") == client_of(s, None, "10.0.0.1")
    assert client_of(s, None, None) == "address:unknown"


async def test_replicas_on_one_redis_share_a_clients_budget(
    redis_server: str, redis_namespace: str
) -> None:
    budgets = (Budget("queries", 0.01, 5, "Q"), Budget("events", 1.0, 10, "E"))
    stores = [RedisBuckets.connect(redis_server, redis_namespace) for _ in range(2)]
    a, b = (RateLimits(*budgets, store=store) for store in stores)
    try:
        for replica in (a, b, a, b, a):  # the burst of 5, spread over two processes
            await replica.charge(replica.queries, "key:k", 1)
        for replica in (a, b):
            with pytest.raises(RateLimited):
                await replica.charge(replica.queries, "key:k", 1)
        await b.charge(b.queries, "key:other", 5)  # another client: its own bucket
    finally:
        for replica in (a, b):
            await replica.close()


async def test_an_unreachable_redis_falls_back_on_this_process_buckets() -> None:
    store = RedisBuckets.connect(f"redis://127.0.0.1:{free_port()}/0", "nowhere")
    rl = RateLimits(Budget("queries", 0.01, 2, "Q"), Budget("events", 1.0, 10, "E"), store=store)
    try:
        await rl.charge(rl.queries, "c", 2)
        with pytest.raises(RateLimited):
            await rl.charge(rl.queries, "c", 1)
    finally:
        await rl.close()
