"""Stable orders of small integer keys, quicker than numpy's stable argsort.

A request groups a few thousand item indices several times (source hits by item, relations by
item). `np.argsort(kind="stable")` runs a merge sort; packing each key with its position into one
int64 and sorting those plainly (numpy's vectorised sort) gives the same order 3 to 5 times
quicker: every packed value is distinct, so the order is total.
"""

from __future__ import annotations

import numpy as np

PACKABLE = 2**31  # keys below this, and fewer positions than 2**32, pack into an int64


def stable_order(keys: np.ndarray) -> np.ndarray:
    """`np.argsort(keys, kind="stable")` for non-negative integer keys."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    keys = np.asarray(keys)
    if keys.min() < 0 or keys.max() >= PACKABLE or n >= 2**32:
        return np.argsort(keys, kind="stable")
    packed = (keys.astype(np.int64) << 32) | np.arange(n, dtype=np.int64)
    packed.sort()
    return packed & 0xFFFFFFFF


def runs(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of equal values in `sorted_keys` (non-empty, sorted): where each run starts, and the
    run each position is in."""
    new = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
    return np.flatnonzero(new), np.cumsum(new) - 1
