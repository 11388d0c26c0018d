"""Running a stage or a source under its deadline, with test-only injected faults.

The orchestrator and the candidate stage call `run_within`; stages and sources never time
themselves. A fault (delay or failure) can be injected by name through settings
(`SHORTLIST_FAULTS`), for tests only and off by default: into a stage or a source (`run_within`
looks its own name up) or into a store call (`inject` at the call site, e.g. `ann:cf_vector`, a
LanceDB ANN search, or `events:append`, the live event log's write). The names that exist are
`app.pipeline.FAULT_POINTS`; settings refuse any other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel, Field

from app.domain import StageStatus

T = TypeVar("T")
log = logging.getLogger("shortlist.deadlines")


class Fault(BaseModel):
    """A test-only fault injected into a named stage, source or store call."""

    delay_ms: float = Field(0.0, ge=0, description="Sleep this long before the call.")
    fail: bool = Field(False, description="Raise an error instead of calling.")


class InjectedFault(RuntimeError):
    pass


async def inject(name: str, faults: Mapping[str, Fault] | None) -> None:
    """Apply the fault injected into `name`, if any: sleep, then maybe raise InjectedFault."""
    fault = (faults or {}).get(name)
    if fault is None:
        return
    if fault.delay_ms:
        await asyncio.sleep(fault.delay_ms / 1000)
    if fault.fail:
        raise InjectedFault(f"fault injected into {name}")


@dataclass
class Outcome(Generic[T]):
    status: StageStatus
    value: T | None
    ms: float
    error: str = ""


async def run_within(
    name: str,
    deadline_ms: float,
    call: Callable[[], Awaitable[T]],
    faults: Mapping[str, Fault] | None = None,
) -> Outcome[T]:
    """Await `call()` for at most `deadline_ms`; never raises for a timeout or an error."""
    started = time.perf_counter()

    async def guarded() -> T:
        await inject(name, faults)
        return await call()

    try:
        async with asyncio.timeout(max(deadline_ms, 0.0) / 1000):
            value = await guarded()
    except TimeoutError:
        return Outcome(
            StageStatus.TIMEOUT, None, _ms(started), f"{name} exceeded {deadline_ms:.0f} ms"
        )
    except Exception as exc:  # a failing part must not fail the request
        log.warning("%s failed: %s", name, exc, exc_info=not isinstance(exc, InjectedFault))
        return Outcome(StageStatus.ERROR, None, _ms(started), f"{type(exc).__name__}: {exc}")
    return Outcome(StageStatus.OK, value, _ms(started))


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
