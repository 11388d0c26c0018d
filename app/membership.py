"""Membership of item indices in a set, asked for arrays of tens of thousands of indices.

A request's gate checks every row a search scans (about 36,000 for the content search at 1M
items) against the items the user consumed (tens to thousands). A binary search per row
(`np.searchsorted`) costs about 40 ns a row in mispredicted branches. `Members` first looks each
index up in a table of bits hashed by its low bits, small enough to stay in the core's cache:
most rows are answered "not a member" by that one gather, and only the few that hit are
binary-searched. The answers are the same: 1.48 -> 0.05 ms for 36,000 rows against 150 items.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

MIN_TABLE = 1 << 16  # 64 KB of bools: in the L2 cache
MAX_TABLE = 1 << 22
SLOTS_PER_MEMBER = 16  # a row that is not a member hits the table with odds below 1 in 16


class Members:
    """A set of integers, asked about whole arrays at a time."""

    def __init__(self, values: Iterable[int] | np.ndarray) -> None:
        given = values if isinstance(values, np.ndarray) else np.fromiter(values, dtype=np.int64)
        self.values = np.unique(given.astype(np.int64, copy=False))  # sorted, distinct
        size = MIN_TABLE
        while size < SLOTS_PER_MEMBER * len(self.values) and size < MAX_TABLE:
            size <<= 1
        self._mask = size - 1
        self._table = np.zeros(size, dtype=bool)
        self._table[self.values & self._mask] = True

    def __len__(self) -> int:
        return len(self.values)

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        """Whether each of `idx` is a member, elementwise."""
        idx = np.asarray(idx, dtype=np.int64)
        out = np.zeros(len(idx), dtype=bool)
        if not len(idx) or not len(self.values):
            return out
        maybe = np.flatnonzero(np.take(self._table, idx & self._mask))
        if len(maybe):
            asked = idx[maybe]
            at = np.searchsorted(self.values, asked).clip(max=len(self.values) - 1)
            out[maybe] = self.values[at] == asked
        return out
