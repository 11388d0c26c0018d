"""The Starlette application: the engine opens in the lifespan, the GraphQL router is mounted.

`app` never imports `schema`: the GraphQL ASGI app is handed in by whoever composes the server
(`shortlist serve`, tests), keeping the dependency one-way. Around it: the request body limit
(`app.refusals.BodyLimit`); beside it: /healthz (the process answers), /readyz (503 until the
engine is loaded) and /metrics (`app.metrics`, this app's own registry). In `app.state`: the
engine, the metrics and the per-client rate limits, which the GraphQL layer charges.

A start-up that fails for an expected reason (no catalog, a missing or unreadable model file, an
unwritable live database) is reported to the server as one line, `cannot start: <why>`, with no
traceback: uvicorn logs it and exits non-zero.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import heap
from app.engine import Engine
from app.errors import ShortlistError
from app.logs import configure as configure_logs
from app.metrics import CONTENT_TYPE, Metrics
from app.rate_limits import RateLimits
from app.refusals import BodyLimit
from app.settings import Settings

log = logging.getLogger("shortlist.server")


def create_app(settings: Settings, graphql: Any) -> Starlette:
    failure: list[str] = []  # why the start-up failed, in one line, for StartupFailure
    metrics = Metrics()  # this app's own registry: several apps in one process never collide

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        configure_logs(settings.log_format, settings.log_level)
        try:
            engine = await Engine.start(settings)
        except ShortlistError as exc:
            failure.append(f"cannot start: {exc}")
            raise
        engine.observers.append(metrics.observe_result)
        app.state.engine = engine
        app.state.rate_limits = rate_limits = RateLimits.from_settings(settings)
        log.info("serving %s from %s", engine.current.runtime.version, settings.db_path)
        hangup = _reload_on_sighup(engine)
        try:
            with heap.serving():
                yield
        finally:
            hangup()
            await rate_limits.close()
            await engine.close()

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        engine: Engine | None = getattr(request.app.state, "engine", None)
        if engine is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse(
            {
                "status": "ready",
                "modelVersion": engine.current.runtime.version,
                "replica": f"{socket.gethostname()}:{os.getpid()}",  # which process answered
            }
        )

    async def exposition(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    async def root(request: Request) -> RedirectResponse:
        return RedirectResponse("/graphql")

    metrics.watch(lambda: getattr(app.state, "engine", None))
    app = Starlette(
        routes=[
            Route("/", root),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", exposition),
            Route("/graphql", graphql),
        ],
        lifespan=lifespan,
        middleware=[
            Middleware(StartupFailure, failure=failure),
            Middleware(BodyLimit, max_bytes=settings.max_body_bytes),
        ],
    )
    app.state.metrics = metrics
    return app


class StartupFailure:
    """Tells the server why the start-up failed in one line instead of Starlette's traceback."""

    def __init__(self, app: ASGIApp, failure: list[str]) -> None:
        self.app = app
        self.failure = failure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def reported(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed" and self.failure:
                message = {**message, "message": self.failure[-1]}
            await send(message)

        await self.app(scope, receive, reported)


def _reload_on_sighup(engine: Engine) -> Callable[[], None]:
    """SIGHUP loads the newest built version in the background; returns the undo."""
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        try:
            result = await engine.reload()
            log.info("SIGHUP: serving %s (switched: %s)", result.model_version, result.switched)
        except ShortlistError as exc:
            log.error("SIGHUP: %s", exc)

    def on_hangup() -> None:
        task = loop.create_task(reload())
        running.add(task)
        task.add_done_callback(running.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hangup)
    except (NotImplementedError, RuntimeError, ValueError):  # no signals here (thread, Windows)
        return lambda: None

    def undo() -> None:
        loop.remove_signal_handler(signal.SIGHUP)
        for task in running:
            task.cancel()

    return undo
