"""Who may run an operation, and how often: the key queries may need, the per-client budgets.

Once per operation, before the document is even parsed: with SHORTLIST_QUERIES_NEED_KEY on,
every operation needs one of the configured keys (mutations then check their own, stricter, key
in their resolvers). Once it is validated, a query is charged to the client's queries budget,
one per top-level field (an aliased field counts again). recordEvents charges its events to the
events budget (`charge`) once its events are known.

Refusals: UNAUTHENTICATED (HTTP 200, like every GraphQL error), or RATE_LIMITED with HTTP
status 429, a Retry-After header and `retryAfter` (seconds) in the error's extensions.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from typing import Literal

from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, OperationDefinitionNode
from graphql.utilities import get_operation_ast
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from app.access import authorize_query
from app.errors import RateLimited, ShortlistError
from schema.context import Context
from schema.errors import graphql_error


async def charge(context: Context, budget: Literal["queries", "events"], cost: int) -> None:
    """Charge `cost` to the client's budget; a refusal is raised as a RATE_LIMITED error."""
    limits = context.rate_limits
    if limits is None:
        return
    try:
        await limits.charge(getattr(limits, budget), context.client, cost)
    except RateLimited as exc:
        if context.response is not None:
            context.response.status_code = 429
            context.response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
        raise graphql_error(exc) from None


class Admission(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        context = self.execution_context.context
        if isinstance(context, Context):
            try:
                authorize_query(context.engine.settings, context.api_key)
            except ShortlistError as exc:
                raise graphql_error(exc) from None
        yield

    async def on_execute(self) -> AsyncIterator[None]:  # type: ignore[override]
        execution = self.execution_context
        if isinstance(execution.context, Context):
            document = execution.graphql_document
            operation = get_operation_ast(document, execution.operation_name) if document else None
            execution.context.operation = field_names(operation)
            if execution.operation_type is OperationType.QUERY:
                await charge(execution.context, "queries", top_level_fields(operation))
        yield


def field_names(operation: OperationDefinitionNode | None) -> str:
    """The operation's top-level fields, sorted and joined by '+' (fragments opened): a label
    with few values, since only fields of the schema get this far."""
    if operation is None:
        return "unknown"
    names: set[str] = set()
    for selection in operation.selection_set.selections:
        if isinstance(selection, FieldNode):
            names.add(selection.name.value)
        elif isinstance(selection, InlineFragmentNode):
            names.update(
                s.name.value for s in selection.selection_set.selections if isinstance(s, FieldNode)
            )
        elif isinstance(selection, FragmentSpreadNode):
            names.add("fragment")  # its name is the client's: not a label value
    return "+".join(sorted(names)) or "unknown"


def top_level_fields(operation: OperationDefinitionNode | None) -> int:
    """How many fields the operation asks for at its top level (fragments opened), at least 1."""
    if operation is None:
        return 1
    count = 0
    for selection in operation.selection_set.selections:
        if isinstance(selection, FieldNode):
            count += 1
        elif isinstance(selection, InlineFragmentNode):
            count += len(selection.selection_set.selections)
        elif isinstance(selection, FragmentSpreadNode):
            count += 1  # counted as one: its fields are bounded by the alias and token limits
    return max(1, count)
