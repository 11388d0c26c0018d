"""Admission: at most `in_flight` requests run at once, the others wait in order or time out."""

from __future__ import annotations

import asyncio

from app.admission import QUEUE, Admission
from app.domain import StageStatus


async def test_requests_beyond_in_flight_wait_their_turn_in_arrival_order() -> None:
    admission = Admission(in_flight=2)
    running, most, order = 0, 0, []

    async def request(n: int) -> float:
        nonlocal running, most
        async with admission.turn(budget_ms=5000) as queued:
            running += 1
            most = max(most, running)
            order.append(n)
            await asyncio.sleep(0.05)
            running -= 1
        assert queued.name == QUEUE and queued.status is StageStatus.OK
        return queued.ms

    waits = await asyncio.gather(*(request(n) for n in range(6)))
    assert most == 2
    assert order == list(range(6)), "first come, first served"
    assert waits[0] < 20 and waits[1] < 20, "the first two never wait"
    assert waits[2] >= 40 and waits[4] >= 90, "the others wait for a slot to free"


async def test_a_request_not_admitted_within_its_budget_runs_late_and_is_reported() -> None:
    admission = Admission(in_flight=1)
    hold = asyncio.Event()

    async def holder() -> None:
        async with admission.turn(budget_ms=5000):
            await hold.wait()

    holding = asyncio.create_task(holder())
    await asyncio.sleep(0.01)
    async with admission.turn(budget_ms=30) as queued:
        assert queued.status is StageStatus.TIMEOUT and queued.ms >= 30
        assert "not admitted within 30 ms" in queued.detail
    hold.set()
    await holding
    async with admission.turn(budget_ms=30) as queued:  # the slot it never took is free
        assert queued.status is StageStatus.OK
