"""Fill the shown slots greedily so that similar items do not crowd together.

Two strategies, both walking the slate in its current (possibly boosted) order:

- "mmr": maximal marginal relevance on content vectors. Each slot takes the entry maximising
  `lambda * score - (1 - lambda) * max cosine similarity to the entries already chosen`.
- "genre_cap": each slot takes the first entry that keeps every genre at most `max_per_genre`
  times in every `window` consecutive slots. When no entry fits, the one overfilling the fewest
  genres is taken, so the slate is never shorter than asked.

Entries not chosen keep their order after the chosen ones (they are the pool exploration draws
from). An entry gets an effect when the strategy decided its slot: it was taken ahead of the
next entry in order, or passed over in favour of another.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from app.reranking.rule import Phase, Rule, RuleConfig
from app.reranking.slate import RerankContext, Slate


class DiversityConfig(RuleConfig):
    """Which diversity strategy fills the shown slots, and its knobs."""

    mode: Literal["mmr", "genre_cap"] = Field(
        default="mmr", description="'mmr' on content vectors, or 'genre_cap' on genres."
    )
    mmr_lambda: float = Field(
        default=0.8,
        ge=0.0,
        le=1.0,
        description="MMR weight of the score against novelty: 1 keeps the score order.",
    )
    max_per_genre: int = Field(
        default=3, ge=1, description="genre_cap: most entries sharing a genre within one window."
    )
    window: int = Field(
        default=6, ge=1, description="genre_cap: consecutive slots the cap applies to."
    )
    depth: int = Field(
        default=150,
        ge=1,
        description="Only the first `depth` entries of the slate compete for slots.",
    )


class Diversity(Rule[DiversityConfig]):
    name = "diversity"
    phase = Phase.SELECT
    config_type = DiversityConfig

    def apply(self, slate: Slate, context: RerankContext) -> Slate:
        depth = min(len(slate), self.config.depth)
        picks = min(context.slots, depth)
        if picks < 2:
            return slate
        considered = slate.items[:depth]
        if self.config.mode == "mmr":
            steps = mmr_steps(
                slate.scores[:depth],
                np.take(self.items.content, considered, axis=0),
                picks,
                self.config.mmr_lambda,
            )
        else:
            steps = genre_cap_steps(
                np.take(self.items.genre_matrix, considered, axis=0),
                picks,
                self.config.max_per_genre,
                self.config.window,
            )
        taken = np.zeros(len(slate), dtype=bool)
        taken[steps] = True
        order = np.concatenate([steps, np.flatnonzero(~taken)])
        result = slate.take(order)
        self._note_moves(result, order, steps)
        return result

    def _note_moves(self, result: Slate, order: np.ndarray, steps: np.ndarray) -> None:
        decided: set[int] = set()
        remaining = np.ones(len(order), dtype=bool)
        for chosen in steps:
            next_in_order = int(np.argmax(remaining))
            if chosen != next_in_order:
                decided.update((int(chosen), next_in_order))
            remaining[chosen] = False
        new_position = np.empty(len(order), dtype=np.int64)
        new_position[order] = np.arange(len(order))
        for old in sorted(decided):
            new = int(new_position[old])
            if new != old:
                result.note(new, self.name, f"moved from {old + 1} to {new + 1} for diversity")


def mmr_steps(scores: np.ndarray, vectors: np.ndarray, picks: int, weight: float) -> np.ndarray:
    """Positions chosen for the first `picks` slots by maximal marginal relevance.

    The max-similarity vector is updated incrementally, one row of the similarity matrix per
    slot, so a slot costs O(n): three numpy calls. The penalty is applied to the similarities
    once (a positive factor commutes with max exactly) and a chosen entry's relevance becomes
    -inf (so is its gain, whatever its penalty).
    """
    penalty = 1.0 - weight
    penalties = penalty * (vectors @ vectors.T).astype(np.float64)
    relevance = weight * scores.astype(np.float64)
    steps = np.empty(picks, dtype=np.int64)
    max_penalty = np.zeros(len(scores))
    gain = relevance.copy()
    for slot in range(picks):
        chosen = int(np.argmax(gain))
        steps[slot] = chosen
        relevance[chosen] = -np.inf
        if slot:
            np.maximum(max_penalty, penalties[chosen], out=max_penalty)
        else:
            max_penalty = penalties[chosen].copy()
        np.subtract(relevance, max_penalty, out=gain)
    return steps


def genre_cap_steps(genres: np.ndarray, picks: int, cap: int, window: int) -> np.ndarray:
    """Positions chosen for the first `picks` slots under the per-window genre cap."""
    n = len(genres)
    matrix = genres.astype(np.int64)
    available = np.ones(n, dtype=bool)
    steps = np.empty(picks, dtype=np.int64)
    for slot in range(picks):
        recent = steps[max(0, slot - window + 1) : slot]
        full = matrix[recent].sum(axis=0) >= cap
        overfilled = matrix[:, full].sum(axis=1) if full.any() else np.zeros(n, dtype=np.int64)
        overfilled[~available] = np.iinfo(np.int64).max
        chosen = int(np.argmin(overfilled))
        steps[slot] = chosen
        available[chosen] = False
    return steps
