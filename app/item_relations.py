"""Item-item relations learned by the build, and a user's affinity through them.

A user's affinity for item j is the sum over the user's endorsed history items i of
weight(i) * relation(i, j); the history item contributing most is the anchor of "because you
liked X". Two layouts:

- `NeighbourRelations`: each item's k strongest relations (the `item_knn` table: shrunk cosine
  similarity of audiences), for catalogs of any size;
- `DenseRelations`: a full weight matrix over a subset of items (the `ease` table: EASE's
  regression weights over the items with the widest audiences), where negative weights count.

One implementation serves the candidate sources and the ranking features, so both score alike.
A request asks each table twice about the same history (its candidate source, then its ranking
feature), so a table remembers its last few answers (`_Recent`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from app.sorting import runs, stable_order

# A request's relations are accumulated densely (catalog-sized arrays, ~10 ns per catalog item)
# when the catalog is at most this many times their number, else by sorting them (~200 ns per
# relation): at 1M items and 2,000 relations, 10 ms against 0.3 ms.
DENSE_ITEMS_PER_RELATION = 16


class Affinity:
    """Items related to a history (ascending item_index) with their summed scores; the anchor of
    an item (the history item contributing most) is worked out only for the items asked."""

    def __init__(self, items: np.ndarray, scores: np.ndarray) -> None:
        self.items = items
        self.scores = scores

    def lookup(self, items: np.ndarray) -> np.ndarray:
        """Scores of the given items, 0 where the history relates to none of them."""
        if not len(self.items):
            return np.zeros(len(items), dtype=np.float32)
        at = np.minimum(np.searchsorted(self.items, items), len(self.items) - 1)
        return np.where(self.items[at] == items, self.scores[at], 0.0).astype(np.float32)

    def anchors(self, items: np.ndarray) -> np.ndarray:
        """The strongest history item behind each of `items` (all related), -1 where none."""
        return np.full(len(items), -1, dtype=np.int64)


class _KnownAnchors(Affinity):
    def __init__(self, items: np.ndarray, scores: np.ndarray, anchors: np.ndarray) -> None:
        super().__init__(items, scores)
        self._anchors = anchors

    def anchors(self, items: np.ndarray) -> np.ndarray:
        if not len(self.items):
            return np.full(len(items), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.items, items), len(self.items) - 1)
        return np.where(self.items[at] == items, self._anchors[at], -1)


class _DenseAnchors(Affinity):
    def __init__(
        self,
        items: np.ndarray,
        scores: np.ndarray,
        relations: DenseRelations,
        rows: np.ndarray,
        mass: np.ndarray,
    ) -> None:
        super().__init__(items, scores)
        self._relations, self._rows, self._mass = relations, rows, mass

    def anchors(self, items: np.ndarray) -> np.ndarray:
        covered = self._relations.items
        columns = np.minimum(np.searchsorted(covered, items), len(covered) - 1)
        known = covered[columns] == items
        out = np.full(len(items), -1, dtype=np.int64)
        if known.any():
            # whole rows, then the columns: 4-5x quicker than np.ix_'s element-wise gather
            block = np.take(self._relations.weights, self._rows, axis=0)[:, columns[known]]
            strongest = np.argmax(block * self._mass[:, None], axis=0)
            out[known] = covered[self._rows[strongest]]
        return out


class ItemRelations(Protocol):
    def affinity(self, history: np.ndarray, weights: np.ndarray, decay: float = 1.0) -> Affinity:
        """Affinity of the items related to `history` (item_index, newest first), each history
        item weighted by its endorsement weight times decay**position."""
        ...


def _decayed(weights: np.ndarray, decay: float) -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float32)
    if decay < 1.0:
        weights = weights * decay ** np.arange(len(weights), dtype=np.float32)
    return weights


def _empty() -> Affinity:
    return Affinity(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))


# Answers a table remembers: a request's second ask comes after its other sources ran, and a few
# more while other requests' stages run in between (their asks come in between too).
REMEMBERED = 4


class _Recent:
    """A table's last few affinities, by their exact inputs (compared by value: the history
    arrays are copied, so no caller can change an answer after it is remembered)."""

    def __init__(self) -> None:
        self._answers: deque[tuple[float, np.ndarray, np.ndarray, Affinity]] = deque(
            maxlen=REMEMBERED
        )

    def get(self, history: np.ndarray, weights: np.ndarray, decay: float) -> Affinity | None:
        for asked_decay, asked_history, asked_weights, answer in list(self._answers):
            if (
                asked_decay == decay
                and np.array_equal(asked_history, history)
                and np.array_equal(asked_weights, weights)
            ):
                return answer
        return None

    def put(
        self, history: np.ndarray, weights: np.ndarray, decay: float, answer: Affinity
    ) -> Affinity:
        self._answers.append((decay, history.copy(), weights.copy(), answer))
        return answer

    def answer(
        self,
        history: np.ndarray,
        weights: np.ndarray,
        decay: float,
        compute: Callable[[np.ndarray, np.ndarray, float], Affinity],
    ) -> Affinity:
        """The remembered answer to these inputs, else `compute`'s, remembered."""
        history = np.asarray(history, dtype=np.int64)
        weights = np.asarray(weights, dtype=np.float32)
        known = self.get(history, weights, decay)
        if known is not None:
            return known
        return self.put(history, weights, decay, compute(history, weights, decay))


@dataclass(frozen=True)
class DenseRelations:
    items: np.ndarray  # (m,) item_index covered, ascending
    weights: np.ndarray  # (m, m) float32: weights[a, b] relates items[a] to items[b]
    _recent: _Recent = field(default_factory=_Recent, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        m = len(self.items)
        if self.weights.shape != (m, m):
            raise ValueError(f"weights {self.weights.shape} do not match {m} covered items")
        if m > 1 and not (np.diff(self.items) > 0).all():
            raise ValueError("covered items must be ascending and unique")

    def affinity(self, history: np.ndarray, weights: np.ndarray, decay: float = 1.0) -> Affinity:
        return self._recent.answer(history, weights, decay, self._affinity)

    def _affinity(self, history: np.ndarray, weights: np.ndarray, decay: float) -> Affinity:
        mass = _decayed(weights, decay)
        if not len(self.items) or not len(history):
            return _empty()
        rows = np.minimum(np.searchsorted(self.items, history), len(self.items) - 1)
        known = self.items[rows] == history
        rows, mass = rows[known], mass[known]
        if not len(rows):
            return _empty()
        totals = mass @ self.weights[rows]  # (m,)
        related = np.flatnonzero(totals != 0)
        return _DenseAnchors(
            self.items[related], totals[related].astype(np.float32), self, rows, mass
        )


@dataclass(frozen=True)
class NeighbourRelations:
    neighbours: np.ndarray  # (n_items, k) item_index, -1 padded, strongest first
    weights: np.ndarray  # (n_items, k) float32, 0 padded
    _recent: _Recent = field(default_factory=_Recent, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.neighbours.shape != self.weights.shape:
            raise ValueError(
                f"neighbours {self.neighbours.shape} and weights {self.weights.shape} differ"
            )

    def __len__(self) -> int:
        return len(self.neighbours)

    def affinity(self, history: np.ndarray, weights: np.ndarray, decay: float = 1.0) -> Affinity:
        return self._recent.answer(history, weights, decay, self._affinity)

    def _affinity(self, history: np.ndarray, weights: np.ndarray, decay: float) -> Affinity:
        weights = _decayed(weights, decay)
        known = (history >= 0) & (history < len(self.neighbours))
        history, weights = history[known], weights[known]
        if not len(history):
            return _empty()
        found = self.neighbours[history]
        mass = self.weights[history] * weights[:, None]
        valid = found >= 0
        source = np.broadcast_to(history[:, None], found.shape)[valid]
        found, mass = found[valid].astype(np.int64), mass[valid]
        if len(self.neighbours) <= DENSE_ITEMS_PER_RELATION * len(found):
            return _dense(found, mass, source, len(self.neighbours))
        return _sorted(found, mass, source)


def _dense(found: np.ndarray, mass: np.ndarray, source: np.ndarray, n_items: int) -> Affinity:
    """Accumulate into catalog-sized arrays: about 1 ms for 100k relations at 10k items."""
    totals = np.bincount(found, weights=mass, minlength=n_items)
    best = np.zeros(n_items, dtype=np.float32)
    np.maximum.at(best, found, mass)
    strongest = mass == best[found]
    anchors = np.full(n_items, -1, dtype=np.int64)
    anchors[found[strongest]] = source[strongest]  # ties: any of the strongest will do
    items = np.flatnonzero(totals > 0)
    return _KnownAnchors(items, totals[items].astype(np.float32), anchors[items])


def _sorted(found: np.ndarray, mass: np.ndarray, source: np.ndarray) -> Affinity:
    """Group by sorting, for catalogs too large for a dense accumulator per request: one stable
    sort by item (`app.sorting`), then each run of one item's contributions summed, and its
    strongest contribution found in place (the first of equals, as given)."""
    if not len(found):
        return _empty()
    order = stable_order(found)
    item_run, mass_run = found[order], mass[order]
    starts, run = runs(item_run)
    # float64 sums, each run added in the order given: what a bincount of them adds
    totals = np.add.reduceat(mass_run.astype(np.float64), starts).astype(np.float32)
    comparable = np.where(np.isnan(mass_run), -np.inf, mass_run)  # a NaN is never the strongest
    strongest = np.flatnonzero(comparable == np.maximum.reduceat(comparable, starts)[run])
    first = strongest[np.r_[True, run[strongest][1:] != run[strongest][:-1]]]
    related = totals > 0
    return _KnownAnchors(item_run[starts][related], totals[related], source[order][first][related])
