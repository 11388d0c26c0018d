"""Per-user temporal split: each user's last share of events (by time) is held out."""

from __future__ import annotations

import numpy as np
import pandas as pd


def temporal_split(events: pd.DataFrame, holdout: float = 0.2, min_events: int = 5) -> np.ndarray:
    """Boolean mask of events kept for training.

    For every user with at least `min_events` events, the last `holdout` share of their events
    (at least one) is held out; ties in time keep file order. No held-out event is earlier than
    any kept event of the same user.
    """
    user = events["user_id"].to_numpy()
    codes, _ = pd.factorize(user)
    ts = events["timestamp"].to_numpy()
    order = np.lexsort((np.arange(len(events)), ts, codes))
    sorted_codes = codes[order]
    counts = np.bincount(codes)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    position = np.arange(len(events)) - starts[sorted_codes]
    n = counts[sorted_codes]
    held_n = np.where(n >= min_events, np.maximum(1, np.floor(n * holdout)).astype(np.int64), 0)
    held_sorted = position >= n - held_n
    keep = np.ones(len(events), dtype=bool)
    keep[order[held_sorted]] = False
    # Events at the same second as the first held-out one go with it: no split inside a tie.
    first_held = pd.Series(ts[~keep]).groupby(codes[~keep]).min()
    cut = np.full(len(counts), np.iinfo(np.int64).max)
    cut[first_held.index.to_numpy()] = first_held.to_numpy()
    keep &= ts < cut[codes]
    return keep
