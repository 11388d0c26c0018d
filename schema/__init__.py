"""Shortlist's GraphQL schema (Strawberry): types, queries, mutations, context - nothing else."""

from __future__ import annotations

import strawberry
from strawberry.extensions import MaxTokensLimiter, QueryDepthLimiter

from schema.errors import ShortlistSchema
from schema.mutations import Mutation
from schema.queries import Query

MAX_DEPTH = 10
MAX_TOKENS = 2000


def create_schema() -> strawberry.Schema:
    return ShortlistSchema(
        query=Query,
        mutation=Mutation,
        extensions=[
            lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
            lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        ],
    )
