"""The GraphQL endpoint: Strawberry's ASGI router, its context, and the GraphiQL switch.

Requests Strawberry refuses before GraphQL runs (a body that is not a JSON object, an unknown
content type, a mutation over GET) are answered in GraphQL's shape with a 4xx status and a code
(`app.refusals.refusal`), never as plain text or a server error.

Each request gets an id (the `requestId` of its recommendations), catches up with the other
replicas' events before it runs (`Engine.sync`), and leaves one log line (operation, status,
duration, degraded) and one latency sample in /metrics.

A client that hangs up before its body is read (a load tool stopping, a browser tab closed while
the request waited behind others) gets no answer - there is no one to send it to - and leaves one
line with status 499 (nginx's "client closed request"), not a server error with a traceback. So
does a recommendations request whose client hung up while it waited for its turn: the engine
asks (`Context.client_gone`) before running the pipeline, and runs nothing for it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from cross_web import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL

from app.logs import new_request_id, request_id, request_scope
from app.refusals import refusal
from schema import create_schema
from schema.context import Context

CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
CLIENT_CLOSED = 499  # logged for a request whose client hung up before it was answered
log = logging.getLogger("shortlist.requests")


class ShortlistGraphQL(GraphQL[Context, None]):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        started = time.perf_counter()
        request = Request(scope=scope, receive=receive)
        with request_scope(new_request_id()) as rid:
            status = await self._answer(request, send)
            context: Context | None = getattr(request.state, "context", None)
            operation = _operation(status, context)
            seconds = time.perf_counter() - started
            metrics = getattr(request.app.state, "metrics", None)
            if metrics is not None:
                metrics.observe_request(operation, seconds)
            log.info(
                "%s %s %d in %.1f ms",
                request.method,
                operation,
                status,
                seconds * 1000,
                extra={
                    "request_id": rid,
                    "operation": operation,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "degraded": context.degraded if context is not None else False,
                },
            )

    async def _answer(self, request: Request, send: Send) -> int:
        """Run the request and send its answer; the status sent, or 499 if its client left."""
        try:
            response = await self.run(request)
        except HTTPException as exc:
            code = CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
            response = refusal(exc.status_code, code, exc.reason)
        except ClientDisconnect:  # nothing to answer, and nothing went wrong here
            return CLIENT_CLOSED
        context: Context | None = getattr(request.state, "context", None)
        if context is not None and context.gone:
            return CLIENT_CLOSED  # its answer (an error saying so) has no one to go to
        await response(request.scope, request.receive, send)
        return response.status_code

    async def get_context(self, request: Any, response: Any) -> Context:
        engine = request.app.state.engine
        await engine.sync()  # the other replicas' events and pinned version, before it runs
        context = Context(
            engine=engine,
            request=request if isinstance(request, Request) else None,
            response=response if isinstance(response, Response) else None,
            rate_limits=getattr(request.app.state, "rate_limits", None),
            request_id=request_id.get() or new_request_id(),
        )
        if isinstance(request, Request):
            request.state.context = context
        return context

    def parse_json(self, data: str | bytes) -> Any:
        """The body as a JSON object (or a list: a batch, which Strawberry refuses)."""
        try:
            parsed = self.decode_json(data)
        except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, too deep, too long
            raise HTTPException(400, f"the request is not valid JSON: {_short(exc)}") from None
        if not isinstance(parsed, dict | list):
            raise HTTPException(400, "the body must be a JSON object with a `query`")
        return parsed


def _operation(status: int, context: Context | None) -> str:
    """The name a request is logged and counted under."""
    if status == CLIENT_CLOSED and (context is None or context.operation == "unparsed"):
        return "disconnected"
    if context is not None:
        return context.operation
    # never reached GraphQL: the IDE's page, or refused before parsing
    return "graphiql" if status < 400 else "refused"


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def graphql_app(graphiql: bool = True) -> ShortlistGraphQL:
    return ShortlistGraphQL(create_schema(), graphql_ide="graphiql" if graphiql else None)
