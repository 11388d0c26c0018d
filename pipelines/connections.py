"""Workers take the listening socket's connections in turn: the one with the fewest open takes.

uvicorn's workers all listen on one inherited socket, and whichever wakes first accepts every
connection waiting (libuv accepts until the queue is empty). Clients that keep their connections
open - a load balancer, a frontend's pool, wrk - open them in a burst, so one worker can end up
with all of them and answer on one core while the other idles: at 1M items, 8 connections were
answered at 53 requests/s in one run and 107 in another.

Here a worker accepts only while it has no more open connections than any other live worker.
The counts sit in shared memory (`Loads`, made by the supervisor and inherited by the workers);
each worker publishes its own count before each accept and re-checks on a short timer while it
has more than another, so a burst is dealt out one connection at a time. A worker that died is
not waited for (its pid is checked), and its slot is taken by its replacement. Nor is one that
is alive but has stopped looking (hung, or stopped): each worker's accept loop stamps its slot
at least every `REFRESH_S`, and a worker whose stamp is older than `STALE_S` is passed over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from multiprocessing.context import SpawnContext
from typing import Any, cast

import uvicorn
from uvicorn.supervisors.multiprocess import Process

WAIT_S = 0.002  # a worker with more connections than another looks again after this
REFRESH_S = 0.05  # a worker waiting to accept republishes its count at least this often
STALE_S = 0.5  # a worker whose accept loop has not looked in for this long is passed over
log = logging.getLogger("uvicorn.error")


class Loads:
    """Open connections per worker, in shared memory: a slot (pid, count, stamp) per worker,
    the stamp being when its accept loop last looked (CLOCK_MONOTONIC, the host's, in us)."""

    WIDTH = 3

    def __init__(self, slots: int, context: SpawnContext) -> None:
        self.slots = slots
        self._table = context.Array("q", self.WIDTH * slots)

    def claim(self, pid: int) -> int:
        """A free slot for `pid` (never used, or its worker is gone); RuntimeError if none."""
        with self._table.get_lock():
            for slot in range(self.slots):
                owner = self._table[self.WIDTH * slot]
                if owner in (0, pid) or not _alive(owner):
                    self._table[self.WIDTH * slot : self.WIDTH * (slot + 1)] = [pid, 0, _now()]
                    return slot
        raise RuntimeError(f"all {self.slots} worker slots are taken by live workers")

    def release(self, slot: int) -> None:
        with self._table.get_lock():
            self._table[self.WIDTH * slot : self.WIDTH * (slot + 1)] = [0, 0, 0]

    def publish(self, slot: int, count: int) -> None:
        """This worker's open connections, now (the stamp says it is still looking)."""
        self._table[self.WIDTH * slot + 1] = count
        self._table[self.WIDTH * slot + 2] = _now()

    def fewest(self, slot: int) -> bool:
        """Has this slot's worker no more connections than every other live, looking worker?"""
        table = cast(list[int], self._table.get_obj()[:])  # unlocked: each word is atomic
        mine = table[self.WIDTH * slot + 1]
        fresh = _now() - int(STALE_S * 1_000_000)
        for other in range(self.slots):
            pid, count, stamp = table[self.WIDTH * other : self.WIDTH * (other + 1)]
            if other != slot and pid and count < mine and stamp >= fresh and _alive(pid):
                return False
        return True


def _now() -> int:
    return time.monotonic_ns() // 1000


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process has the pid now: not our worker
        return False
    return True


class TakingServer(uvicorn.Server):
    """uvicorn's server, accepting from the shared socket only in its turn (`Loads`)."""

    def __init__(self, config: uvicorn.Config, loads: Loads) -> None:
        super().__init__(config)
        self.loads = loads
        self._taking: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the lifespan, and no listener of uvicorn's own
        if not sockets:
            raise RuntimeError("a worker taking connections in turn needs the listening socket")
        listener = sockets[0]
        listener.listen(self.config.backlog)  # the supervisor only bound it
        listener.setblocking(False)
        self._taking = asyncio.create_task(self._take(listener), name="take-connections")
        self._taking.add_done_callback(self._stopped_taking)

    def _stopped_taking(self, task: asyncio.Task[None]) -> None:
        """A worker that can no longer accept must not live on: it exits and is replaced."""
        if not task.cancelled() and task.exception() is not None:
            log.error("worker %s stopped taking connections: %r", os.getpid(), task.exception())
            self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._taking is not None:
            self._taking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._taking
        await super().shutdown(sockets)

    def _protocol(self) -> asyncio.Protocol:
        return self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )

    async def _take(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        slot = self.loads.claim(os.getpid())
        try:
            while True:
                self.loads.publish(slot, len(self.server_state.connections))
                if not self.loads.fewest(slot):
                    await asyncio.sleep(WAIT_S)
                    continue
                if not await _readable(loop, listener, REFRESH_S):
                    continue
                try:  # accepted here, never inside a wait that a timeout could cancel (and drop)
                    connection, _ = listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue  # another worker took it
                await _serve_connection(loop, self._protocol, connection, self.config.ssl)
        finally:
            self.loads.release(slot)


async def _readable(loop: asyncio.AbstractEventLoop, listener: socket.socket, wait: float) -> bool:
    """Does a connection wait on `listener` (within `wait` seconds)? Takes nothing: cancelling
    this loses no connection, as cancelling `loop.sock_accept` can once it has accepted."""
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(listener.fileno(), wake)
    try:
        async with asyncio.timeout(wait):
            await ready
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(listener.fileno())


async def _serve_connection(
    loop: asyncio.AbstractEventLoop, protocol: Any, connection: socket.socket, ssl: Any
) -> None:
    try:
        await loop.connect_accepted_socket(protocol, connection, ssl=ssl)
    except OSError:  # the client went away before it was served
        connection.close()


class TakingProcess(Process):
    """A worker process (uvicorn's) whose server takes connections in turn."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket], loads: Loads):
        self.loads = loads
        super().__init__(config, sockets)

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = TakingServer(self.config, self.loads)
        return self._server
