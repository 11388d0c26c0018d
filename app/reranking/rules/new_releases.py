"""Boost recent releases, by a factor that halves every `half_life_days`."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from app.reranking.rule import Phase, Rule, RuleConfig
from app.reranking.slate import RerankContext, Slate


class NewReleasesConfig(RuleConfig):
    """Score x (1 + boost * 0.5 ** (age_days / half_life_days)) for releases up to max_age_days
    before the request. Future-dated and undated items are not boosted."""

    boost: float = Field(
        default=0.3, ge=0.0, description="Extra score share for a release of today."
    )
    half_life_days: float = Field(
        default=30.0, gt=0.0, description="Age at which the boost halves."
    )
    max_age_days: float = Field(default=180.0, ge=0.0, description="Older releases get no boost.")


class NewReleases(Rule[NewReleasesConfig]):
    name = "new_releases"
    phase = Phase.SCORE
    config_type = NewReleasesConfig

    def apply(self, slate: Slate, context: RerankContext) -> Slate:
        if not len(slate) or self.config.boost == 0:
            return slate
        age = context.day - self.items.released_day[slate.items]
        with np.errstate(invalid="ignore"):  # NaN release days compare False: no boost
            recent = (age >= 0) & (age <= self.config.max_age_days)
        if not recent.any():
            return slate
        factor = np.ones(len(slate))
        factor[recent] = 1.0 + self.config.boost * 0.5 ** (age[recent] / self.config.half_life_days)
        for position in np.flatnonzero(recent):
            slate.note(
                int(position),
                self.name,
                f"boosted x{factor[position]:.2f}: released {_ago(age[position])}",
            )
        return slate.rescored(slate.scores * factor)


def _ago(age_days: float) -> str:
    days = int(age_days)
    return "today" if days == 0 else "1 day ago" if days == 1 else f"{days} days ago"
