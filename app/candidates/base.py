"""What every candidate source is: a typed config and one async call returning ranked items."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import ClassVar, Protocol

import numpy as np
from pydantic import BaseModel, Field

from app.domain import ItemFilter, RecommendationRequest, UserState
from app.items import ItemCatalog
from app.membership import Members

EPOCH = date(1970, 1, 1)


class SourceConfig(BaseModel):
    enabled: bool = Field(True, description="Whether the source runs at all.")
    limit: int = Field(200, ge=0, le=5000, description="Most candidates the source returns.")
    deadline_ms: float = Field(60.0, gt=0, description="The source's own deadline.")


@dataclass
class SourceResult:
    """Items in the source's own order (best first), with scores and optional anchors."""

    items: np.ndarray
    scores: np.ndarray
    anchors: np.ndarray | None = None  # item_index that led to each item, -1 for none
    skipped: str | None = None  # why the source had nothing to offer (cold user, ...)

    @classmethod
    def skip(cls, reason: str) -> SourceResult:
        empty = np.zeros(0, dtype=np.int64)
        return cls(empty, np.zeros(0, dtype=np.float32), None, reason)

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class ItemGate:
    """Which items a request may receive: the client's filter plus what the user consumed.

    `sql` is the same filter as a LanceDB prefilter (pushed down into ANN searches); `allows`
    checks item_index arrays in memory for the in-memory sources and the merge.
    """

    items: ItemCatalog
    filter: ItemFilter
    blocked: set[int] = field(default_factory=set)
    sql: str | None = None
    _genre_cols: np.ndarray | None = None
    _released_after_day: float | None = None
    _blocked_members: Members | None = None  # `blocked`, made once (again if it grows)

    @classmethod
    def for_request(
        cls,
        request: RecommendationRequest,
        user: UserState,
        items: ItemCatalog,
        exclude_consumed: bool,
    ) -> ItemGate:
        flt = request.filter
        blocked = set(user.consumed) if exclude_consumed else set()
        excluded = items.indices_of(list(flt.exclude_ids))
        blocked.update(int(i) for i in excluded if i >= 0)
        clauses = []
        genre_cols = None
        if flt.genres:
            known = [g for g in flt.genres if g in items.genre_names]
            genre_cols = np.array([items.genre_names.index(g) for g in known], dtype=np.int64)
            listed = ", ".join(_quote(g) for g in flt.genres)
            clauses.append(f"array_has_any(genres, [{listed}])")
        released_after = None
        if flt.released_after is not None:
            released_after = float((flt.released_after - EPOCH).days)
            # Undated items count as released when first seen, as in ItemCatalog.released_day.
            after = flt.released_after.isoformat()
            next_day = (
                min(flt.released_after, date.max - timedelta(days=1)) + timedelta(days=1)
            ).isoformat()
            clauses.append(
                f"(released > date '{after}' OR (released IS NULL AND "
                f"first_seen >= timestamp '{next_day} 00:00:00'))"
            )
        if flt.exclude_ids:
            listed = ", ".join(_quote(i) for i in flt.exclude_ids[:1000])
            clauses.append(f"item_id NOT IN ({listed})")
        return cls(
            items=items,
            filter=flt,
            blocked=blocked,
            sql=" AND ".join(clauses) if clauses else None,
            _genre_cols=genre_cols,
            _released_after_day=released_after,
        )

    def allows(self, idx: np.ndarray) -> np.ndarray:
        ok = np.ones(len(idx), dtype=bool)
        if not len(idx):
            return ok
        if self._genre_cols is not None:
            ok &= np.take(self.items.genre_matrix, idx, axis=0)[:, self._genre_cols].any(axis=1)
        if self._released_after_day is not None:
            released = self.items.released_day[idx]
            ok &= ~np.isnan(released) & (released >= self._released_after_day + 1)
        if self.blocked:
            members = self._blocked_members
            if members is None or len(members) != len(self.blocked):
                members = self._blocked_members = Members(self.blocked)
            ok &= ~members(idx)
        return ok


def _quote(value: str) -> str:
    """A SQL string literal (single quotes doubled, control characters refused upstream)."""
    return "'" + value.replace("'", "''") + "'"


@dataclass
class SourceInput:
    request: RecommendationRequest
    user: UserState
    gate: ItemGate

    def sampling_rng(self, seed: int) -> np.random.Generator:
        """A generator seeded by `seed`, the user and the request's date: a sampling source
        offers the same user the same sample all day."""
        key = f"{seed}:{self.user.user_id}:{self.request.at.date().isoformat()}"
        # default_rng's generator, made directly: the same stream in half the time (22 us)
        return np.random.Generator(np.random.PCG64(zlib.crc32(key.encode())))


class CandidateSource(Protocol):
    name: ClassVar[str]
    config: SourceConfig

    async def __call__(self, given: SourceInput) -> SourceResult: ...


def keep_allowed(result: SourceResult, gate: ItemGate, limit: int) -> SourceResult:
    ok = gate.allows(result.items)
    anchors = result.anchors[ok][:limit] if result.anchors is not None else None
    return SourceResult(
        result.items[ok][:limit], result.scores[ok][:limit], anchors, result.skipped
    )


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest scores, best first."""
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]
