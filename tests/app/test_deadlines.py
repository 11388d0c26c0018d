"""app.deadlines.run_within: a call that never waits runs straight through; one that waits is
held to what is left of its deadline; nothing raises but a cancellation from outside."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.deadlines import Fault, run_within
from app.domain import StageStatus


async def test_a_call_that_never_waits_is_ok() -> None:
    async def call() -> int:
        return 7

    outcome = await run_within("s", 50, call)
    assert (outcome.status, outcome.value, outcome.error) == (StageStatus.OK, 7, "")


async def test_a_call_that_never_waits_keeps_its_result_past_its_deadline() -> None:
    """Nothing could cut into it, with a timer armed or not: its result is kept."""

    async def call() -> str:
        time.sleep(0.03)
        return "late but whole"

    outcome = await run_within("s", 5, call)
    assert outcome.status is StageStatus.OK and outcome.value == "late but whole"
    assert outcome.ms >= 30


async def test_a_call_that_waits_returns_what_it_waited_for() -> None:
    async def call() -> int:
        await asyncio.sleep(0)
        await asyncio.sleep(0.005)
        return 3

    outcome = await run_within("s", 1000, call)
    assert (outcome.status, outcome.value) == (StageStatus.OK, 3)


async def test_a_call_that_waits_past_its_deadline_is_cut_off() -> None:
    finished = False

    async def call() -> None:
        nonlocal finished
        await asyncio.sleep(5)
        finished = True

    outcome = await run_within("slow", 20, call)
    assert outcome.status is StageStatus.TIMEOUT and outcome.value is None
    assert outcome.error == "slow exceeded 20 ms" and 15 <= outcome.ms < 2000
    assert not finished


async def test_a_call_that_spends_its_deadline_before_it_waits_is_cut_off_at_the_wait() -> None:
    async def call() -> str:
        time.sleep(0.03)
        await asyncio.sleep(0.001)
        return "too late"

    outcome = await run_within("s", 10, call)
    assert outcome.status is StageStatus.TIMEOUT


@pytest.mark.parametrize("waits_first", [False, True])
async def test_a_failing_call_is_an_error_outcome(waits_first: bool) -> None:
    async def call() -> None:
        if waits_first:
            await asyncio.sleep(0)
        raise ValueError("bad row")

    outcome = await run_within("s", 100, call)
    assert outcome.status is StageStatus.ERROR and outcome.error == "ValueError: bad row"


async def test_an_injected_delay_counts_against_the_deadline() -> None:
    async def call() -> int:
        return 1

    outcome = await run_within("s", 20, call, {"s": Fault(delay_ms=2000)})
    assert outcome.status is StageStatus.TIMEOUT and outcome.ms < 1500
    failed = await run_within("s", 20, call, {"s": Fault(fail=True)})
    assert failed.status is StageStatus.ERROR and "fault injected into s" in failed.error


async def test_a_cancellation_from_outside_reaches_the_waiting_call_and_the_caller() -> None:
    cleaned = asyncio.Event()

    async def call() -> None:
        try:
            await asyncio.sleep(5)
        finally:
            cleaned.set()

    task = asyncio.create_task(run_within("s", 10_000, call))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned.is_set()


async def test_the_waiting_call_sees_what_it_awaits_and_what_is_thrown_into_it() -> None:
    """A future's result and an exception set on another future both reach the call."""
    loop = asyncio.get_running_loop()
    good, bad = loop.create_future(), loop.create_future()
    loop.call_soon(good.set_result, 41)
    loop.call_soon(bad.set_exception, KeyError("gone"))

    async def call() -> int:
        value = await good
        try:
            await bad
        except KeyError:
            value += 1
        return value

    outcome = await run_within("s", 1000, call)
    assert (outcome.status, outcome.value) == (StageStatus.OK, 42)
