"""The working list that re-ranking rules pass along, and what every rule may know of the request.

A `Slate` holds every still-eligible entry of the ranked list in its current display order. Each
entry is named by its `row` (its position in `Ranked`), which stays fixed while entries are
dropped, re-scored and moved, so effects recorded by one rule survive the rules after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.domain import RecommendationRequest, RuleEffect, UserState

DAY_SECONDS = 86_400.0


@dataclass(frozen=True)
class RerankContext:
    """What a rule may read besides the slate: the request, the user and the slots to fill."""

    request: RecommendationRequest
    user: UserState
    slots: int  # how many entries will be shown (request.count, never negative)
    day: float  # request.at in days since the epoch, comparable with ItemCatalog.released_day
    seed: int  # RerankConfig.seed
    # (max_per_genre, window) when diversity enforces genre caps: later placements keep them
    genre_cap: tuple[int, int] | None = None

    @classmethod
    def of(
        cls,
        request: RecommendationRequest,
        user: UserState,
        seed: int = 0,
        genre_cap: tuple[int, int] | None = None,
    ) -> RerankContext:
        return cls(
            request=request,
            user=user,
            slots=max(0, request.count),
            day=request.at.timestamp() / DAY_SECONDS,
            seed=seed,
            genre_cap=genre_cap,
        )


@dataclass
class Slate:
    """Entries in display order: `rows` into Ranked, their `items` and their current `scores`.

    `effects` is shared by every slate derived from this one (by `take`), keyed by row, so an
    effect recorded on an entry that is later dropped is simply never shown.
    """

    rows: np.ndarray  # int64
    items: np.ndarray  # int64 item_index
    scores: np.ndarray  # float64, normalised to [0, 1] and then adjusted by rules
    effects: dict[int, list[RuleEffect]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def empty(cls) -> Slate:
        return cls(
            np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        )

    def take(self, keep: np.ndarray) -> Slate:
        """The entries selected by a boolean mask, or by positions in the order given."""
        return Slate(self.rows[keep], self.items[keep], self.scores[keep], self.effects)

    def rescored(self, scores: np.ndarray) -> Slate:
        """The same entries with new scores, re-sorted by score (stable, so ties keep order)."""
        order = np.argsort(-scores, kind="stable")
        return Slate(self.rows[order], self.items[order], scores[order], self.effects)

    def member_of(self, items: set[int]) -> np.ndarray:
        """Which entries are in `items`; O(len(slate)) however large the set (a user's history)."""
        return np.fromiter((item in items for item in self.items.tolist()), bool, len(self.items))

    def note(self, position: int, rule: str, effect: str) -> None:
        """Record what `rule` did to the entry now at `position`."""
        row = int(self.rows[position])
        self.effects.setdefault(row, []).append(RuleEffect(rule=rule, effect=effect))
