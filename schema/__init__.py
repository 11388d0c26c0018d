"""Shortlist's GraphQL schema (Strawberry): types, queries, mutations, context, limits - nothing
else. Every operation passes `schema.admission` (keys for queries, rate limits) and
`schema.limits` (tokens, depth, aliases, introspection) before it runs."""

from __future__ import annotations

import strawberry

from schema.admission import Admission
from schema.documents import Documents
from schema.errors import ShortlistSchema
from schema.limits import QueryLimits
from schema.mutations import Mutation
from schema.queries import Query


def create_schema() -> strawberry.Schema:
    documents = Documents()  # this schema's: a document is valid for one schema
    return ShortlistSchema(
        query=Query, mutation=Mutation, extensions=[Admission, lambda: QueryLimits(documents)]
    )
