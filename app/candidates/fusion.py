"""How stage 1 orders the union of its sources before keeping the best `max_candidates`.

- `ReciprocalRank`: sum over an item's hits of 1 / (60 + rank); needs no training.
- `Calibrated`: sum over an item's hits of the measured chance that a hit of that source at that
  depth is an item the user goes on to endorse. The build measures it on the ranker snapshot
  (held-out later events), per source and per rank band (1, 2-3, 4-7, 8-15, ...), smoothed
  towards the overall rate and never rising with depth. A source the table does not know
  counts as the table's weakest band. Ties keep reciprocal-rank order.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from app.domain import HitTable, SourceHit

RRF_K = 60.0
BANDS = 16  # rank bands 2**b <= rank < 2**(b+1); deeper ranks share the last band


class Fusion(Protocol):
    name: str

    def score(self, hits: list[SourceHit]) -> float:
        """An item's fused score from every source hit that found it (higher is better)."""
        ...

    def scores(self, hits: HitTable, rows: int) -> np.ndarray:
        """`score` of each of `rows` items at once, from all their hits in columns."""
        ...


def _total(hits: HitTable, per_hit: np.ndarray, rows: int) -> np.ndarray:
    """Per item, the sum of a per-hit value (in hit order, as a loop over hits would add)."""
    return np.bincount(hits.row, weights=per_hit, minlength=rows)


def reciprocal_rank(hits: list[SourceHit]) -> float:
    return sum(1.0 / (RRF_K + h.rank) for h in hits)


def reciprocal_ranks(hits: HitTable, rows: int) -> np.ndarray:
    return _total(hits, 1.0 / (RRF_K + hits.rank), rows)


class ReciprocalRank:
    name = "reciprocal_rank"

    def score(self, hits: list[SourceHit]) -> float:
        return reciprocal_rank(hits)

    def scores(self, hits: HitTable, rows: int) -> np.ndarray:
        return reciprocal_ranks(hits, rows)


def band(rank: int) -> int:
    """The rank band of a 1-based rank: 0 for 1, 1 for 2-3, 2 for 4-7, ..."""
    return min(BANDS - 1, max(0, int(rank).bit_length() - 1))


def bands(ranks: np.ndarray) -> np.ndarray:
    """`band` of every rank."""
    exponent = np.frexp(np.maximum(ranks, 1).astype(np.float64))[1] - 1  # bit_length - 1
    return np.minimum(BANDS - 1, exponent)


class Calibrated:
    name = "calibrated"

    def __init__(self, hit_rates: dict[str, list[float]]) -> None:
        for source, rates in hit_rates.items():
            if len(rates) != BANDS or not all(0.0 <= r <= 1.0 for r in rates):
                raise ValueError(f"fusion rates of {source} must be {BANDS} values in [0, 1]")
        self.hit_rates = {s: np.asarray(r, dtype=np.float64) for s, r in hit_rates.items()}
        self.floor = min((float(r.min()) for r in self.hit_rates.values()), default=0.0)

    def score(self, hits: list[SourceHit]) -> float:
        total = 0.0
        for hit in hits:
            rates = self.hit_rates.get(hit.source)
            total += self.floor if rates is None else float(rates[band(hit.rank)])
        # reciprocal rank only breaks ties: it is far below any difference of rates
        return total + 1e-9 * reciprocal_rank(hits)

    def scores(self, hits: HitTable, rows: int) -> np.ndarray:
        table = np.array(
            [self.hit_rates.get(s, np.full(BANDS, self.floor)) for s in hits.sources]
        ).reshape(len(hits.sources), BANDS)
        rates = table[hits.source, bands(hits.rank)]
        return _total(hits, rates, rows) + 1e-9 * reciprocal_ranks(hits, rows)

    def to_manifest(self) -> dict[str, Any]:
        return {"kind": self.name, "hit_rates": {s: r.tolist() for s, r in self.hit_rates.items()}}


def from_manifest(entry: dict[str, Any] | None) -> Fusion:
    """The fusion a catalog version was built with; reciprocal rank when it has none."""
    if not entry or entry.get("kind") != Calibrated.name:
        return ReciprocalRank()
    return Calibrated({str(s): list(r) for s, r in entry["hit_rates"].items()})


def fit_calibrated(
    found: list[list[list[SourceHit]]], endorsed: list[np.ndarray], smoothing: float = 20.0
) -> Calibrated:
    """Hit rates per source and rank band from candidate lists and whether each candidate was
    endorsed later (one list of hits per candidate, per user)."""
    positives: dict[str, np.ndarray] = {}
    totals: dict[str, np.ndarray] = {}
    for hits_per_item, labels in zip(found, endorsed, strict=True):
        for hits, label in zip(hits_per_item, labels.tolist(), strict=True):
            for hit in hits:
                b = band(hit.rank)
                totals.setdefault(hit.source, np.zeros(BANDS))[b] += 1
                positives.setdefault(hit.source, np.zeros(BANDS))[b] += bool(label)
    all_hits = sum(t.sum() for t in totals.values())
    prior = sum(p.sum() for p in positives.values()) / all_hits if all_hits else 0.0
    rates = {}
    for source, total in totals.items():
        seen = total + smoothing > 0
        smoothed = np.full(BANDS, prior)
        smoothed[seen] = (positives[source][seen] + smoothing * prior) / (total[seen] + smoothing)
        rates[source] = np.minimum.accumulate(smoothed).tolist()  # never rising with depth
    return Calibrated(rates)
