"""Every re-ranking rule, by the name used in `RerankConfig.rules` and in `RuleEffect.rule`."""

from __future__ import annotations

from typing import Any

from app.reranking.rule import Rule
from app.reranking.rules.dismissed import Dismissed
from app.reranking.rules.diversity import Diversity
from app.reranking.rules.exclude_consumed import ExcludeConsumed
from app.reranking.rules.exploration import Exploration
from app.reranking.rules.new_releases import NewReleases
from app.reranking.rules.series_dedup import SeriesDedup

RULES: dict[str, type[Rule[Any]]] = {
    rule.name: rule
    for rule in (ExcludeConsumed, Dismissed, SeriesDedup, NewReleases, Diversity, Exploration)
}

__all__ = ["RULES"]
