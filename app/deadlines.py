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
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

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
    """Await `call()` for at most `deadline_ms`; never raises for a timeout or an error.

    The call is run up to its first wait before a deadline is armed: a call that never waits
    (an in-memory source, ranking) cannot be cut into anyway, since nothing else runs until it
    returns, and it is spared the timer (0.4 ms of CPU a request for the dozen calls at 1M
    items). A call that waits finishes under what is left of its deadline; if the part before
    its first wait used all of it, it is cut off at that wait, as an armed timer would have."""
    started = time.perf_counter()
    coroutine = _guarded(name, call, faults)
    try:
        step = coroutine.send(None)
    except StopIteration as done:
        return Outcome(StageStatus.OK, done.value, _ms(started))
    except Exception as exc:  # a failing part must not fail the request
        return _failed(name, exc, started)
    left_ms = max(deadline_ms - _ms(started), 0.0)
    try:
        async with asyncio.timeout(left_ms / 1000):
            value = await _Resumed(coroutine, step)
    except TimeoutError:
        return Outcome(
            StageStatus.TIMEOUT, None, _ms(started), f"{name} exceeded {deadline_ms:.0f} ms"
        )
    except Exception as exc:
        return _failed(name, exc, started)
    return Outcome(StageStatus.OK, value, _ms(started))


async def _guarded(
    name: str, call: Callable[[], Awaitable[T]], faults: Mapping[str, Fault] | None
) -> T:
    await inject(name, faults)
    return await call()


def _failed(name: str, exc: Exception, started: float) -> Outcome[Any]:
    log.warning("%s failed: %s", name, exc, exc_info=not isinstance(exc, InjectedFault))
    return Outcome(StageStatus.ERROR, None, _ms(started), f"{type(exc).__name__}: {exc}")


class _Resumed(Generic[T]):
    """The rest of a coroutine already run up to its first wait (where it yielded `step`):
    awaiting this hands what it waits on to the running task, and passes back what the task
    sends or throws in (a deadline's cancellation among them)."""

    __slots__ = ("coroutine", "step")

    def __init__(self, coroutine: Coroutine[Any, Any, T], step: Any) -> None:
        self.coroutine = coroutine
        self.step = step

    def __await__(self) -> Generator[Any, Any, T]:
        coroutine, step = self.coroutine, self.step
        while True:
            try:
                sent = yield step
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:  # a cancellation (the deadline) is passed on as well
                try:
                    step = coroutine.throw(exc)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
            else:
                try:
                    step = coroutine.send(sent)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
