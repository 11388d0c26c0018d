"""Every GraphQL error leaves with a code in `extensions`; refused requests log one line.

Codes of the errors GraphQL itself raises (the resolvers' own come from `app.errors`):

    GRAPHQL_PARSE_FAILED       the document is not GraphQL
    TOO_MANY_TOKENS            the document is longer than SHORTLIST_MAX_QUERY_TOKENS
    GRAPHQL_VALIDATION_FAILED  the document does not fit the schema (unknown field, bad literal)
    BAD_USER_INPUT             a variable's value does not fit its type (NaN, an impossible date)
    QUERY_TOO_DEEP, TOO_MANY_ALIASES, INTROSPECTION_DISABLED   `schema.limits`
    INTERNAL                   anything unexpected: logged with its traceback, message masked

A refused request is the client's doing: it is logged at INFO in one line, never with a
traceback. Only INTERNAL errors are logged as errors.
"""

from __future__ import annotations

import logging

import strawberry
from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.types import ExecutionContext

from app.errors import ShortlistError

log = logging.getLogger("shortlist.schema")

INTERNAL = "INTERNAL"
INTERNAL_MESSAGE = "internal error: the request could not be answered"


def graphql_error(exc: Exception) -> GraphQLError:
    """An expected failure keeps its message and code; anything else is logged and masked."""
    if isinstance(exc, ShortlistError):
        return GraphQLError(str(exc), extensions={"code": exc.code, **exc.details})
    log.exception("unexpected error in a resolver")
    return GraphQLError(INTERNAL_MESSAGE, extensions={"code": INTERNAL})


def code_of(error: GraphQLError, phase: str) -> str:
    """The error's code; for GraphQL's own errors, what it says about the request.

    `phase`: where the request was when it failed: "parse", "validate" or "execute" (variables
    are coerced as execution begins)."""
    code = (error.extensions or {}).get("code")
    if isinstance(code, str) and code:
        return code
    if phase == "parse":
        # graphql-core's parser stops at `max_tokens` with a syntax error that says so; a
        # document nested too deeply for the parser is a parse failure too, not ours
        too_long = isinstance(error, GraphQLSyntaxError) and "tokens" in error.message
        return "TOO_MANY_TOKENS" if too_long else "GRAPHQL_PARSE_FAILED"
    cause = error.original_error
    if error.path is None and (cause is None or isinstance(cause, GraphQLError)):
        return "BAD_USER_INPUT" if phase == "execute" else "GRAPHQL_VALIDATION_FAILED"
    argument = error.message.startswith("Argument '")  # graphql-core's words for these
    if phase == "execute" and argument and (cause is None or isinstance(cause, GraphQLError)):
        # an argument coerced as its field runs, e.g. an explicit null for `count: Int! = 10`
        return "BAD_USER_INPUT"
    return INTERNAL  # a failure outside any resolver's care, e.g. an unserialisable value


def _phase(context: ExecutionContext | None) -> str:
    if context is None or context.graphql_document is None:
        return "parse"
    return "validate" if context.result is None else "execute"


class ShortlistSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Strawberry calls this once for every error, before the response is made: the code
        # written here is the one the client reads.
        phase = _phase(execution_context)
        for error in errors:
            code = code_of(error, phase)
            error.extensions = {**(error.extensions or {}), "code": code}
            if code != INTERNAL:
                log.info("request refused: %s (%s)", error.message, code)
            elif error.message != INTERNAL_MESSAGE:  # not yet logged by graphql_error
                super().process_errors([error], execution_context)
                error.message = INTERNAL_MESSAGE
