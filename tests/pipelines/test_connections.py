"""The workers' turn-taking table (`pipelines.connections.Loads`), in shared memory."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import sys
import time
from typing import Any

import pytest
import uvicorn

from pipelines.connections import REFRESH_S, STALE_S, Loads, TakingServer


def loads(slots: int) -> Loads:
    return Loads(slots, multiprocessing.get_context("spawn"))


def test_the_worker_with_fewest_connections_takes_the_next() -> None:
    table = loads(2)
    me = table.claim(os.getpid())
    other = table.claim(os.getppid())  # a live process standing in for the other worker
    assert me != other
    assert table.fewest(me) and table.fewest(other)  # 0 and 0: either may take
    table.publish(me, 1)
    assert not table.fewest(me) and table.fewest(other)
    table.publish(other, 1)
    assert table.fewest(me) and table.fewest(other)
    table.publish(other, 3)
    assert table.fewest(me) and not table.fewest(other)


def test_a_dead_worker_is_not_waited_for_and_its_slot_is_taken() -> None:
    table = loads(2)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        gone = table.claim(worker.pid)
        me = table.claim(os.getpid())
        table.publish(me, 5)
        assert not table.fewest(me)  # the other worker has fewer (0): it takes the next
    finally:
        worker.kill()
        worker.wait()
    assert table.fewest(me)  # dead, it will never accept: not waited for
    assert table.claim(os.getppid()) == gone  # its replacement takes the dead worker's slot
    with pytest.raises(RuntimeError, match="all 2 worker slots are taken"):
        table.claim(1)  # both slots held by live processes
    table.release(me)
    assert table.claim(1) == me  # a released slot is free again


def test_a_worker_that_stopped_looking_is_passed_over() -> None:
    table = loads(2)
    me, other = table.claim(os.getpid()), table.claim(os.getppid())
    table.publish(other, 0)
    table.publish(me, 3)
    assert not table.fewest(me)
    time.sleep(STALE_S + 0.1)  # the other's accept loop has not looked in since: hung, stopped
    assert table.fewest(me)
    table.publish(other, 0)  # looking again: its turn again
    assert not table.fewest(me)


async def _app(scope: dict, receive: Any, send: Any) -> None:
    """The least ASGI app: a lifespan, and 200 "ok" to every request."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_no_connection_is_lost_between_turns() -> None:
    """Connections arriving as the accept loop's wait times out are all answered: an accept
    inside a wait that a timeout cancels can drop the socket it took (it lost 15 of 1,500)."""
    config = uvicorn.Config(_app, host="127.0.0.1", port=0, loop="uvloop", log_level="error")
    listener = config.bind_socket()
    port = listener.getsockname()[1]
    server = TakingServer(config, loads(1))
    serving = asyncio.create_task(server.serve([listener]))
    while not server.started:
        await asyncio.sleep(0.01)
    answered = 0
    try:
        for n in range(1500):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            answered += b" 200 OK" in await asyncio.wait_for(reader.read(), 5)
            writer.close()
            if n % 7 == 0:  # arrive around the loop's REFRESH_S timeouts too
                await asyncio.sleep(REFRESH_S * 0.98)
    finally:
        server.should_exit = True
        await serving
    assert answered == 1500
