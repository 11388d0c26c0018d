"""How GraphQL errors are logged: expected ones (with a code) quietly, others with a traceback."""

from __future__ import annotations

import logging

import strawberry
from graphql import GraphQLError
from strawberry.types import ExecutionContext

from app.errors import ShortlistError

log = logging.getLogger("shortlist.schema")


def graphql_error(exc: Exception) -> GraphQLError:
    """An expected failure keeps its message and code; anything else is logged and masked."""
    if isinstance(exc, ShortlistError):
        return GraphQLError(str(exc), extensions={"code": exc.code, **exc.details})
    log.exception("unexpected error in a resolver")
    return GraphQLError(
        "internal error: the request could not be answered", extensions={"code": "INTERNAL"}
    )


class ShortlistSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Syntax and validation errors carry no original error: the client's doing, like a code.
        unexpected = [
            e for e in errors if not (e.extensions or {}).get("code") and e.original_error
        ]
        for error in errors:
            if error not in unexpected:
                code = (error.extensions or {}).get("code", "GRAPHQL_VALIDATION")
                log.info("request refused: %s (%s)", error.message, code)
        if unexpected:
            super().process_errors(unexpected, execution_context)
