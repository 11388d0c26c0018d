"""Drop, or push down, what the user has dismissed."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from app.reranking.rule import Phase, Rule, RuleConfig
from app.reranking.slate import RerankContext, Slate


class DismissedConfig(RuleConfig):
    """How items in `UserState.dismissed` are treated."""

    mode: Literal["drop", "demote"] = Field(
        default="drop",
        description="'drop' removes dismissed items; 'demote' multiplies their score.",
    )
    demote_factor: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Score multiplier for dismissed items in 'demote' mode.",
    )


class Dismissed(Rule[DismissedConfig]):
    name = "dismissed"
    phase = Phase.SCORE  # in 'demote' mode; dropping alone would be a filter
    config_type = DismissedConfig

    def apply(self, slate: Slate, context: RerankContext) -> Slate:
        if not context.user.dismissed or not len(slate):
            return slate
        dismissed = slate.member_of(context.user.dismissed)
        if not dismissed.any():
            return slate
        if self.config.mode == "drop":
            return slate.take(~dismissed)
        factor = self.config.demote_factor
        scores = np.where(dismissed, slate.scores * factor, slate.scores)
        for position in np.flatnonzero(dismissed):
            slate.note(int(position), self.name, f"demoted x{factor:.2f}: dismissed before")
        return slate.rescored(scores)
