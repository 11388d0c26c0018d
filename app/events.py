"""Event types and how much each says about a user's taste.

One definition serves batch training (pipelines) and real-time fold-in (app), so the CF model and
the live user vectors weigh events the same way.
"""

from __future__ import annotations

import numpy as np

EVENT_TYPES = ("view", "click", "rating", "purchase", "dismiss")

# Confidence of an implicit endorsement per event type. A dismissal is no endorsement at all;
# ratings get their weight from the value (see `event_weights`).
BASE_WEIGHT = {"view": 1.0, "click": 1.5, "purchase": 3.0, "dismiss": 0.0, "rating": 1.0}


def event_weights(events: np.ndarray, values: np.ndarray, rating_max: float = 5.0) -> np.ndarray:
    """Endorsement weight of each event, >= 0.

    A rating counts by how far it sits above the middle of the scale: on a 1-5 scale a 5 weighs
    3.0, a 4 weighs 1.8, a 3 weighs 0.6 and anything at or below 2.5 weighs nothing - a 1-star
    rating is not an endorsement. Other event types use BASE_WEIGHT; a value, if given, is ignored.
    """
    events = np.asarray(events, dtype=object)
    values = np.asarray(values, dtype=np.float64)
    weights = np.zeros(len(events), dtype=np.float32)
    for kind, base in BASE_WEIGHT.items():
        if kind != "rating":
            weights[events == kind] = base
    is_rating = events == "rating"
    if is_rating.any():
        scale = rating_max if rating_max > 0 else 5.0
        rel = np.nan_to_num(values[is_rating] / scale, nan=0.8)
        weights[is_rating] = np.clip((rel - 0.5) / 0.5, 0.0, 1.0) * 3.0
    return weights


def is_positive(events: np.ndarray, values: np.ndarray, rating_max: float = 5.0) -> np.ndarray:
    """Whether each event endorses its item: a view or better, a rating above 3 of 5."""
    return event_weights(events, values, rating_max) >= 1.0
