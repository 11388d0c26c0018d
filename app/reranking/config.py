"""The re-ranking stage's config: which rules run in which order, and one section per rule."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.reranking.rule import Phase, RuleConfig
from app.reranking.rules import RULES
from app.reranking.rules.dismissed import DismissedConfig
from app.reranking.rules.diversity import DiversityConfig
from app.reranking.rules.exclude_consumed import ExcludeConsumedConfig
from app.reranking.rules.exploration import ExplorationConfig
from app.reranking.rules.new_releases import NewReleasesConfig
from app.reranking.rules.series_dedup import SeriesDedupConfig

DEFAULT_ORDER = [
    "exclude_consumed",
    "dismissed",
    "series_dedup",
    "new_releases",
    "diversity",
    "exploration",
]


class RerankConfig(BaseModel):
    """Re-ranking settings. A rule runs when it is listed in `rules` and its section is enabled.

    Rule sections are frozen, so their default instances are safely shared.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ORDER),
        description="Rules in the order they run. Filters (exclude_consumed, series_dedup) may "
        "go anywhere; the others must keep the order scoring (dismissed, new_releases), then "
        "diversity, then exploration, since each re-orders what the one before decided.",
    )
    seed: int = Field(
        default=0, description="Seed for exploration's draw (mixed with user and date)."
    )
    exclude_consumed: ExcludeConsumedConfig = Field(
        default=ExcludeConsumedConfig(), description="Drop items the user has consumed."
    )
    dismissed: DismissedConfig = Field(
        default=DismissedConfig(), description="Drop or demote items the user dismissed."
    )
    series_dedup: SeriesDedupConfig = Field(
        default=SeriesDedupConfig(), description="One item per series, the best-placed."
    )
    new_releases: NewReleasesConfig = Field(
        default=NewReleasesConfig(), description="Boost recent releases."
    )
    diversity: DiversityConfig = Field(
        default=DiversityConfig(), description="Fill slots so similar items spread out."
    )
    exploration: ExplorationConfig = Field(
        default=ExplorationConfig(),
        description="Give a share of slots to less popular items from deeper in the list.",
    )

    @field_validator("rules")
    @classmethod
    def _known_rules_in_phase_order(cls, rules: list[str]) -> list[str]:
        unknown = [name for name in rules if name not in RULES]
        if unknown:
            raise ValueError(f"unknown rules {unknown}; known: {sorted(RULES)}")
        repeated = sorted({name for name in rules if rules.count(name) > 1})
        if repeated:
            raise ValueError(f"rules listed more than once: {repeated}")
        latest: tuple[Phase, str] | None = None
        for name in rules:
            phase = RULES[name].phase
            if phase == Phase.FILTER:
                continue
            if latest is not None and phase < latest[0]:
                raise ValueError(
                    f"rule '{name}' must run before '{latest[1]}': it would undo its order"
                )
            latest = (phase, name)
        return rules

    def section(self, name: str) -> RuleConfig:
        """The config section of the rule called `name`."""
        section = getattr(self, name)
        assert isinstance(section, RULES[name].config_type)
        return section
