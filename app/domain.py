"""The request path's domain objects: what goes into the pipeline and what comes out.

Items travel through the stages as `item_index` integers (row numbers into the catalog's item
arrays); ids and metadata are attached only at the end.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import NamedTuple, overload

import numpy as np


class StageStatus(enum.Enum):
    OK = "OK"
    TIMEOUT = "TIMEOUT"
    ERROR = "ERROR"
    SKIPPED = "SKIPPED"


@dataclass(frozen=True)
class ItemFilter:
    genres: tuple[str, ...] = ()
    exclude_ids: tuple[str, ...] = ()
    released_after: date | None = None


@dataclass(frozen=True)
class RecommendationRequest:
    user_id: str
    count: int
    at: datetime  # timezone-aware
    device: str | None = None
    session_id: str | None = None
    filter: ItemFilter = field(default_factory=ItemFilter)
    explain: bool = False
    # answered as `requestId` and written in the request's log lines (app.logs)
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class UserState:
    """What the pipeline knows of a user at request time (batch profile + real-time overlay)."""

    user_id: str
    known: bool
    cf_vector: np.ndarray | None
    content_vector: np.ndarray | None
    recent_items: list[int]  # item_index, newest first
    consumed: set[int]
    dismissed: set[int]
    n_events: int = 0
    active_days: int = 0
    genre_shares: dict[str, float] = field(default_factory=dict)
    # endorsed items, newest first, with their summed endorsement weights (item-item scoring)
    history: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    history_weights: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))


class SourceHit(NamedTuple):
    """A tuple: a request makes a hundred or more of them (1.2 us less each than a frozen
    dataclass)."""

    source: str
    rank: int  # 1-based rank within the source
    score: float
    anchor: int | None = None  # item_index that led here ("because you watched X")


@dataclass(frozen=True)
class HitTable:
    """Source hits in columns: hit j is rank `rank[j]` of source `sources[source[j]]`, found the
    candidate in row `row[j]`. Rows ascend; a row's hits keep the order they were found in."""

    sources: list[str]
    row: np.ndarray  # int64
    source: np.ndarray  # int64, into `sources`
    rank: np.ndarray  # int64, 1-based
    score: np.ndarray  # float64
    anchor: np.ndarray  # int64 item_index, -1 for none

    @classmethod
    def from_lists(cls, hits: list[list[SourceHit]]) -> HitTable:
        flat = [(row, h) for row, row_hits in enumerate(hits) for h in row_hits]
        sources = sorted({h.source for _, h in flat})
        number = {s: i for i, s in enumerate(sources)}
        return cls(
            sources,
            np.array([row for row, _ in flat], dtype=np.int64),
            np.array([number[h.source] for _, h in flat], dtype=np.int64),
            np.array([h.rank for _, h in flat], dtype=np.int64),
            np.array([h.score for _, h in flat], dtype=np.float64),
            np.array([-1 if h.anchor is None else h.anchor for _, h in flat], dtype=np.int64),
        )

    def take(self, rows: np.ndarray, n_rows: int) -> HitTable:
        """The hits of these rows (of `n_rows`), renumbered 0, 1, ... in the order given."""
        counts = np.bincount(self.row, minlength=n_rows)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        picked = counts[rows]
        base = np.repeat(starts[rows] - np.concatenate([[0], np.cumsum(picked)[:-1]]), picked)
        at = base + np.arange(int(picked.sum()))
        return HitTable(
            self.sources,
            np.repeat(np.arange(len(rows)), picked),
            self.source[at],
            self.rank[at],
            self.score[at],
            self.anchor[at],
        )

    def lists(self, n_rows: int) -> list[list[SourceHit]]:
        names, anchors = self.sources, self.anchor.tolist()
        flat = [
            SourceHit(names[s], r, c, a if a >= 0 else None)
            for s, r, c, a in zip(
                self.source.tolist(), self.rank.tolist(), self.score.tolist(), anchors, strict=True
            )
        ]
        bounds = np.searchsorted(self.row, np.arange(n_rows + 1)).tolist()
        return [flat[bounds[i] : bounds[i + 1]] for i in range(n_rows)]


class HitLists(Sequence[list[SourceHit]]):
    """`HitTable.lists`, each row's objects made when the row is first asked for: re-ranking
    shows 30 of the 100 ranked rows (the other 70 rows' objects were a third of the ranking
    stage's Python time at 1M items)."""

    def __init__(self, table: HitTable, n_rows: int) -> None:
        self._table = table
        self._bounds = np.searchsorted(table.row, np.arange(n_rows + 1)).tolist()
        self._made: dict[int, list[SourceHit]] = {}

    def __len__(self) -> int:
        return len(self._bounds) - 1

    @overload
    def __getitem__(self, row: int) -> list[SourceHit]: ...

    @overload
    def __getitem__(self, row: slice) -> list[list[SourceHit]]: ...

    def __getitem__(self, row: int | slice) -> list[SourceHit] | list[list[SourceHit]]:
        if isinstance(row, slice):
            return [self[r] for r in range(len(self))[row]]
        if not -len(self) <= row < len(self):
            raise IndexError(f"row {row} of {len(self)}")
        row %= len(self)
        made = self._made.get(row)
        if made is None:
            t, lo, hi = self._table, self._bounds[row], self._bounds[row + 1]
            made = [
                SourceHit(t.sources[s], r, c, a if a >= 0 else None)
                for s, r, c, a in zip(
                    t.source[lo:hi].tolist(),
                    t.rank[lo:hi].tolist(),
                    t.score[lo:hi].tolist(),
                    t.anchor[lo:hi].tolist(),
                    strict=True,
                )
            ]
            self._made[row] = made
        return made


class Candidates:
    """Stage-1 output: unique items, each with every source hit that found it.

    The hits are held in columns (`table`, what the request path reads); `hits`, one list of
    objects per item, is made on first use (explanations, offline measurements).
    """

    def __init__(
        self,
        items: np.ndarray,
        hits: list[list[SourceHit]] | None = None,
        *,
        table: HitTable | None = None,
    ) -> None:
        self.items = items  # item_index, int64, unique, in merge order
        self.table = table if table is not None else HitTable.from_lists(hits or [])
        self._hits = hits

    @property
    def hits(self) -> list[list[SourceHit]]:
        if self._hits is None:
            self._hits = self.table.lists(len(self.items))
        return self._hits

    def take(self, rows: np.ndarray) -> Candidates:
        """These rows, in this order."""
        return Candidates(self.items[rows], table=self.table.take(rows, len(self.items)))

    @classmethod
    def empty(cls) -> Candidates:
        return cls(np.zeros(0, dtype=np.int64), [])

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class Ranked:
    """Stage-2 output: candidates in ranked order, with scores (and optional contributions)."""

    items: np.ndarray
    hits: Sequence[list[SourceHit]]  # per item (HitLists: made when asked for)
    scores: np.ndarray  # float64, descending
    ranker_scores: np.ndarray | None  # None when the ranker did not run
    contributions: list[dict[str, float]] | None = None
    features: np.ndarray | None = None  # rows aligned with items, for explanations

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class RuleEffect:
    rule: str
    effect: str


@dataclass
class Pick:
    """One shown item with everything that explains it."""

    item: int
    score: float
    hits: list[SourceHit]
    ranker_score: float | None
    contributions: dict[str, float]
    rules: list[RuleEffect]


@dataclass(frozen=True)
class StageReport:
    name: str
    ms: float
    status: StageStatus
    in_count: int
    out_count: int
    detail: str = ""


@dataclass
class RecommendationResult:
    picks: list[Pick]
    stages: list[StageReport]
    degraded: bool
    request_id: str
    model_version: str


@dataclass(frozen=True)
class ItemView:
    """An item as clients see it."""

    item_id: str
    title: str
    description: str
    genres: list[str]
    series: str | None
    series_position: int | None
    released: date | None
    popularity: float
    mean_rating: float | None


@dataclass(frozen=True)
class ScoredItemView:
    item: ItemView
    score: float


@dataclass(frozen=True)
class UserView:
    user_id: str
    known: bool
    n_events: int
    top_genres: dict[str, float]
    recent: list[ItemView]
