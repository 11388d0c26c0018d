"""The GraphQL endpoint: Strawberry's ASGI router, its context, and the GraphiQL switch.

Requests Strawberry refuses before GraphQL runs (a body that is not a JSON object, an unknown
content type, a mutation over GET) are answered in GraphQL's shape with a 4xx status and a code
(`app.refusals.refusal`), never as plain text or a server error.
"""

from __future__ import annotations

from typing import Any

from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL

from app.refusals import refusal
from schema import create_schema
from schema.context import Context

CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


class ShortlistGraphQL(GraphQL[Context, None]):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            response = await self.run(Request(scope=scope, receive=receive))
        except HTTPException as exc:
            code = CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
            response = refusal(exc.status_code, code, exc.reason)
        await response(scope, receive, send)

    async def get_context(self, request: Any, response: Any) -> Context:
        return Context(
            engine=request.app.state.engine,
            request=request if isinstance(request, Request) else None,
            response=response if isinstance(response, Response) else None,
            rate_limits=getattr(request.app.state, "rate_limits", None),
        )

    def parse_json(self, data: str | bytes) -> Any:
        """The body as a JSON object (or a list: a batch, which Strawberry refuses)."""
        try:
            parsed = self.decode_json(data)
        except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, too deep, too long
            raise HTTPException(400, f"the request is not valid JSON: {_short(exc)}") from None
        if not isinstance(parsed, dict | list):
            raise HTTPException(400, "the body must be a JSON object with a `query`")
        return parsed


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def graphql_app(graphiql: bool = True) -> ShortlistGraphQL:
    return ShortlistGraphQL(create_schema(), graphql_ide="graphiql" if graphiql else None)
