"""Folding a user's new events into their CF vector against the version's fixed item factors.

The user vector is the exact least-squares solve implicit's ALS makes for a user (the same as
`AlternatingLeastSquares.recalculate_user`): with r the log1p of the summed endorsement weights
per item (as the build damps them) and confidence c = alpha * r,

    x = (YtY + regularization * I + sum_i (c_i - 1) y_i y_i^T)^-1  sum_i c_i y_i

YtY is computed once per version. The user's batch events come from the version's events table
(once per user and version), the live ones from the overlay; a brand-new user is solved from
their live events alone, so a few views give them a personal vector without retraining.
For a BPR build the same regularised least squares is solved against BPR's item factors (bias
column included): the direction ranks items by the user's endorsements, its scale is ALS's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.compute as pc

from app.deadlines import Fault, inject
from app.items import ItemCatalog
from app.mapped_rows import ReorderedRows, VectorRows

HISTORY_FAULT = "events:history"  # test-only fault injection into the batch history read


@dataclass(frozen=True)
class History:
    """A user's batch endorsements in one version: summed weight per item_index."""

    items: np.ndarray  # item_index, int64, unique
    weights: np.ndarray  # summed endorsement weight, float64

    @property
    def mass(self) -> float:
        return float(self.weights.sum())

    @classmethod
    def empty(cls) -> History:
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))


class FoldIn:
    def __init__(
        self,
        item_factors: VectorRows,
        in_cf: np.ndarray,
        *,
        alpha: float,
        regularization: float,
        events: Any | None = None,
        faults: Mapping[str, Fault] | None = None,
    ) -> None:
        # the catalog's own float32 rows, read by rows (no copy: 0.5 GB at 1M items as float64);
        # a solve widens the few rows it reads
        self.factors = item_factors
        self.in_cf = np.asarray(in_cf, dtype=bool)
        self.alpha = alpha
        self.regularization = regularization
        self.events = events  # the version's events table (LanceDB async), for batch histories
        self.faults = dict(faults or {})
        self.base = _gram(self.factors) + regularization * np.eye(self.factors.shape[1])

    @classmethod
    def for_version(
        cls,
        items: ItemCatalog,
        cf: dict[str, Any],
        events: Any | None,
        faults: Mapping[str, Fault] | None = None,
    ) -> FoldIn:
        params = cf.get("params", {}) or {}
        return cls(
            items.cf,
            items.in_cf,
            alpha=float(params.get("alpha", 1.0)),
            regularization=float(params.get("regularization", 0.01)),
            events=events,
            faults=faults,
        )

    def solve(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
        """The user vector for these summed endorsement weights, or None when none counts."""
        items = np.asarray(items, dtype=np.int64)
        weights = np.asarray(weights, dtype=np.float64)
        inside = (items >= 0) & (items < len(self.factors))
        items, weights = items[inside], weights[inside]
        keep = (weights > 0) & self.in_cf[items]
        if not keep.any():
            return None
        confidence = self.alpha * np.log1p(weights[keep])
        y = self.factors[items[keep]].astype(np.float64)
        a = self.base + (y.T * (confidence - 1.0)) @ y
        b = y.T @ confidence
        try:
            x = np.linalg.solve(a, b)
        except np.linalg.LinAlgError:
            x = np.linalg.lstsq(a, b, rcond=None)[0]
        return x.astype(np.float32) if np.all(np.isfinite(x)) else None

    def solve_with(
        self, history: History, live: dict[str, float], catalog: ItemCatalog
    ) -> np.ndarray | None:
        """The vector from batch history plus live endorsements (by item id)."""
        ids = list(live)
        index = catalog.indices_of(ids)
        weights = np.array([live[i] for i in ids], dtype=np.float64)
        items = np.concatenate([history.items, index[index >= 0]])
        summed = np.concatenate([history.weights, weights[index >= 0]])
        if not len(items):
            return None
        unique, inverse = np.unique(items, return_inverse=True)
        return self.solve(unique, np.bincount(inverse, weights=summed))

    async def history(self, user_id: str, catalog: ItemCatalog) -> History:
        """The user's batch endorsements in this version (empty for users the build never saw)."""
        if self.events is None:
            return History.empty()
        await inject(HISTORY_FAULT, self.faults)
        quoted = user_id.replace("'", "''")
        rows = (
            await self.events.query()
            .where(f"user_id = '{quoted}'")
            .select(["item_id", "weight"])
            .to_arrow()
        )
        if not rows.num_rows:
            return History.empty()
        summed = rows.group_by("item_id").aggregate([("weight", "sum")])
        index = catalog.indices_of(summed["item_id"].to_pylist())
        weights = pc.fill_null(summed["weight_sum"], 0).to_numpy(zero_copy_only=False)
        keep = (index >= 0) & (weights > 0)
        return History(index[keep], np.asarray(weights, dtype=np.float64)[keep])


def _gram(factors: VectorRows, block: int = 65_536) -> np.ndarray:
    """YtY in float64, a block of rows at a time: a float64 copy of all the factors at once
    would be twice the catalog's CF matrix (5 GB at 10M items) for a (dim, dim) result."""
    if isinstance(factors, ReorderedRows):
        factors = factors.base  # the same rows in another order: the same sum
    dim = factors.shape[1]
    total = np.zeros((dim, dim), dtype=np.float64)
    for start in range(0, len(factors), block):
        part = factors[start : start + block].astype(np.float64)
        total += part.T @ part
    return total
