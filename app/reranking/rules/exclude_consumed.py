"""Drop what the user has already consumed."""

from __future__ import annotations

from app.reranking.rule import Phase, Rule, RuleConfig
from app.reranking.slate import RerankContext, Slate


class ExcludeConsumedConfig(RuleConfig):
    """Drop items in `UserState.consumed` (turn off for catalogs meant to be re-watched)."""


class ExcludeConsumed(Rule[ExcludeConsumedConfig]):
    name = "exclude_consumed"
    phase = Phase.FILTER
    config_type = ExcludeConsumedConfig

    def apply(self, slate: Slate, context: RerankContext) -> Slate:
        if not context.user.consumed or not len(slate):
            return slate
        return slate.take(~slate.member_of(context.user.consumed))
