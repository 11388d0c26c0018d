"""The GraphQL endpoint: Strawberry's ASGI router, its context, and the GraphiQL switch."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from strawberry.asgi import GraphQL

from schema import create_schema
from schema.context import Context


class ShortlistGraphQL(GraphQL[Context, None]):
    async def get_context(self, request: Any, response: Any) -> Context:
        return Context(
            engine=request.app.state.engine,
            request=request if isinstance(request, Request) else None,
        )


def graphql_app(graphiql: bool = True) -> ShortlistGraphQL:
    return ShortlistGraphQL(create_schema(), graphql_ide="graphiql" if graphiql else None)
