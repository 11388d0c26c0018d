"""Give a share of the shown slots to less popular entries from deeper in the slate.

Candidates are entries that would not be shown (below the shown slots, within `depth`) whose
popularity percentile is under `popularity_threshold`. They are drawn without replacement with
probability proportional to `score * (1 - popularity_pct) ** discount`, and placed at evenly
spread slots, never the first. The draw is seeded by (config seed, user id, request date), so a
user sees the same exploration picks all day and a different set the next.
"""

from __future__ import annotations

import zlib
from datetime import UTC

import numpy as np
from pydantic import Field

from app.domain import RecommendationRequest
from app.reranking.rule import Phase, Rule, RuleConfig
from app.reranking.slate import RerankContext, Slate


class ExplorationConfig(RuleConfig):
    """How many shown slots go to less popular entries, and which entries qualify."""

    share: float = Field(
        default=0.1,
        ge=0.0,
        le=0.5,
        description="Share of the shown slots given to exploration, rounded half up "
        "(0.1 of 30 slots is 3); never the first slot.",
    )
    popularity_threshold: float = Field(
        default=0.8,
        gt=0.0,
        le=1.0,
        description="Only entries with popularity_pct below this may take an exploration slot.",
    )
    discount: float = Field(
        default=1.0,
        ge=0.0,
        description="Exponent on (1 - popularity_pct) in the draw weight: higher favours the "
        "less popular more; 0 draws by score alone.",
    )
    depth: int = Field(
        default=100,
        ge=1,
        description="Candidates come from the first `depth` entries of the slate.",
    )


class Exploration(Rule[ExplorationConfig]):
    name = "exploration"
    phase = Phase.PLACE
    config_type = ExplorationConfig

    def apply(self, slate: Slate, context: RerankContext) -> Slate:
        shown = min(context.slots, len(slate))
        budget = min(int(np.floor(self.config.share * shown + 0.5)), shown - 1)
        if budget <= 0:
            return slate
        deeper = np.arange(shown, min(len(slate), self.config.depth))
        popularity = self.items.popularity_pct[slate.items[deeper]]
        eligible = popularity < self.config.popularity_threshold
        candidates, popularity = deeper[eligible], popularity[eligible]
        if not len(candidates):
            return slate
        weight = slate.scores[candidates] * (1.0 - popularity) ** self.config.discount
        rng = np.random.default_rng(exploration_seed(context.seed, context.request))
        if context.genre_cap is None:
            drawn = np.sort(candidates[weighted_draw(weight, budget, rng)])  # best-placed first
            slots = (np.arange(1, len(drawn) + 1) * shown) // (len(drawn) + 1)
        else:
            ranked_draw = candidates[weighted_draw(weight, len(candidates), rng)]
            wanted = (np.arange(1, budget + 1) * shown) // (budget + 1)
            slots, drawn = self._place_within_cap(slate, ranked_draw, wanted, context.genre_cap)
            if not len(drawn):
                return slate
        organic = np.setdiff1d(np.arange(len(slate)), drawn, assume_unique=True)
        order = np.empty(len(slate), dtype=np.int64)
        is_slot = np.zeros(len(slate), dtype=bool)
        is_slot[slots] = True
        order[slots] = drawn
        order[~is_slot] = organic
        result = slate.take(order)
        for slot, source in zip(slots, drawn, strict=True):
            pct = self.items.popularity_pct[slate.items[source]]
            result.note(
                int(slot),
                self.name,
                f"exploration slot: popularity percentile {pct:.2f} (from position {source + 1})",
            )
        return result

    def _place_within_cap(
        self, slate: Slate, ranked_draw: np.ndarray, wanted: np.ndarray, cap: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Slots and entries, in draw order, whose placement keeps every genre window in cap.

        Diversity already arranged the organic entries within the cap; an exploration entry is
        placed only where every window that contains its slot stays within the cap.
        """
        max_per_genre, window = cap
        genres = np.take(self.items.genre_matrix, slate.items, axis=0)
        placed: dict[int, int] = {}
        for slot in wanted.tolist():
            for entry in ranked_draw.tolist():
                if entry in placed.values():
                    continue
                trial = {**placed, slot: entry}
                order = _order(len(slate), trial)
                lo, hi = max(0, slot - window + 1), min(slot, len(order) - window)
                fits = all(
                    genres[order[start : start + window]].sum(axis=0).max() <= max_per_genre
                    for start in range(lo, max(lo, hi) + 1)
                )
                if fits:
                    placed = trial
                    break
        slots = np.array(sorted(placed), dtype=np.int64)
        return slots, np.array([placed[s] for s in slots.tolist()], dtype=np.int64)


def _order(n: int, placed: dict[int, int]) -> np.ndarray:
    """Display order of slate positions with `placed` entries moved to their slots."""
    organic = [p for p in range(n) if p not in set(placed.values())]
    order = np.empty(n, dtype=np.int64)
    is_slot = np.zeros(n, dtype=bool)
    is_slot[list(placed)] = True
    order[list(placed)] = list(placed.values())
    order[~is_slot] = organic
    return order


def exploration_seed(seed: int, request: RecommendationRequest) -> int:
    """A stable seed per (seed, user, request date in UTC): never Python's salted hash()."""
    day = request.at.astimezone(UTC).date().isoformat()
    return zlib.crc32(f"{seed}|{request.user_id}|{day}".encode())


def weighted_draw(weight: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of `k` draws without replacement with probability proportional to `weight`.

    Efraimidis-Spirakis keys (log u / w): the same law as successive weighted draws, in one
    vectorised step, and zero weights are simply drawn last.
    """
    k = min(k, len(weight))
    with np.errstate(divide="ignore"):
        keys = np.log(rng.random(len(weight))) / np.maximum(weight, 0.0)
    return np.argsort(-keys, kind="stable")[:k]
