"""Admission: how many requests of this process run the pipeline at once.

A Python process runs one request's Python at a time, and the stages' native code (numpy,
CatBoost) overlaps with it only a little. Started all at once, more requests than the core can
carry each run slower, miss their stage deadlines together and are all answered from fallbacks.
Admission lets `in_flight` requests run and queues the others in arrival order. A queued
request's wait counts against its whole-request budget and is reported as the `queue` stage;
one not admitted before its budget is spent runs with no time left, so the stages' fallbacks
answer it, degraded, as for any late request: an overloaded process still answers everyone, and
cheaply, while the admitted requests keep their full quality.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.domain import StageReport, StageStatus

QUEUE = "queue"


class Admission:
    def __init__(self, in_flight: int) -> None:
        self.in_flight = in_flight
        self._slots = asyncio.Semaphore(in_flight)

    @asynccontextmanager
    async def turn(self, budget_ms: float) -> AsyncIterator[StageReport]:
        """Wait (at most `budget_ms`) for a slot, hold it inside; yields the wait as a report
        (TIMEOUT when the budget ran out first: the request runs anyway, with no time left)."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(max(budget_ms, 0.0) / 1000):
                await self._slots.acquire()
            admitted = True
        except TimeoutError:
            admitted = False
        waited = (time.perf_counter() - started) * 1000
        detail = "" if admitted else f"not admitted within {budget_ms:.0f} ms"
        status = StageStatus.OK if admitted else StageStatus.TIMEOUT
        try:
            yield StageReport(QUEUE, waited, status, 0, 0, detail)
        finally:
            if admitted:
                self._slots.release()
