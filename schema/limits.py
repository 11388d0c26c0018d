"""Limits on the GraphQL document itself, checked before anything runs.

From settings, read per operation from the serving engine's settings:

    SHORTLIST_MAX_QUERY_TOKENS   longer documents stop the parser (TOO_MANY_TOKENS)
    SHORTLIST_MAX_QUERY_DEPTH    deeper field nesting is refused (QUERY_TOO_DEEP)
    SHORTLIST_MAX_QUERY_ALIASES  more aliased fields are refused (TOO_MANY_ALIASES)
    SHORTLIST_INTROSPECTION      off: __schema and __type are refused (INTROSPECTION_DISABLED)

Each limit is a graphql-core validation rule run on its own before the schema's validation,
so its error carries its own code and a refused document is never validated in full. Limits on
argument values (`count`, list sizes, string lengths) are checked where the values are read
(`schema.queries`, `app.engine`, `app.realtime`); the body size by `app.refusals.BodyLimit`.

A document that passed the limits and the schema's validation is remembered with them
(`schema.documents`): the same text under the same limits is neither parsed nor validated again.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema, validate
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import SchemaExtension
from strawberry.extensions.max_aliases import create_validator as aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule

from app.settings import Settings
from schema.documents import Documents


@lru_cache(maxsize=16)
def _depth(max_depth: int) -> type[ASTValidationRule]:
    return depth_rule(max_depth, None)


@lru_cache(maxsize=16)
def _aliases(max_aliases: int) -> type[ASTValidationRule]:
    return aliases_rule(max_aliases)


def limit_errors(
    schema: GraphQLSchema, document: DocumentNode, settings: Settings
) -> list[GraphQLError]:
    """The document's breaches of the limits, each with its code (empty: within limits)."""
    rules: list[tuple[str, type[ASTValidationRule]]] = [
        ("QUERY_TOO_DEEP", _depth(settings.max_query_depth)),
        ("TOO_MANY_ALIASES", _aliases(settings.max_query_aliases)),
    ]
    if not settings.introspection:
        rules.append(("INTROSPECTION_DISABLED", NoSchemaIntrospectionCustomRule))
    for code, rule in rules:
        errors = validate(schema, document, [rule], max_errors=5)
        if errors:
            for error in errors:
                error.extensions = {**(error.extensions or {}), "code": code}
            return list(errors)
    return []


class QueryLimits(SchemaExtension):
    def __init__(self, documents: Documents | None = None) -> None:
        super().__init__()
        self.documents = documents  # None: every document is parsed and validated
        self.known = False  # this operation's document passed before

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        context.parse_options["max_tokens"] = _settings(context.context).max_query_tokens
        yield

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if self.documents is not None and context.query and context.graphql_document is None:
            document = self.documents.valid(context.query, _checks(context.context))
            if document is not None:  # Strawberry parses only when no document is set
                context.graphql_document = document
                self.known = True
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if self.known:
            context.pre_execution_errors = []  # passed before: Strawberry skips its validation
            yield
            return
        if context.graphql_document is not None and context.pre_execution_errors is None:
            errors = limit_errors(
                context.schema._schema, context.graphql_document, _settings(context.context)
            )
            if errors:  # Strawberry skips its validation and answers these
                context.pre_execution_errors = errors
        yield
        passed = context.pre_execution_errors == []  # Strawberry's validation ran and passed
        if passed and self.documents is not None and context.query and context.graphql_document:
            self.documents.passed(context.query, _checks(context.context), context.graphql_document)


def _checks(context: object) -> tuple[Any, ...]:
    """What a document is held to besides the schema: a document is remembered with these."""
    settings = _settings(context)
    return (
        settings.max_query_tokens,
        settings.max_query_depth,
        settings.max_query_aliases,
        settings.introspection,
    )


def _settings(context: object) -> Settings:
    return context.engine.settings  # type: ignore[attr-defined, no-any-return]
