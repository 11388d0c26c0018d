"""The canonical in-memory form every input format is read into.

`items` columns (one row per item, item_id unique):
    item_id: str, title: str, description: str, genres: list[str], tags: str (free text),
    series: str | None, series_position: float (NaN when unknown),
    released: datetime64[s] (NaT when unknown)
`events` columns (one row per event, only events whose item is in `items`):
    user_id: str, item_id: str, timestamp: int64 unix seconds,
    event: str (one of app.events.EVENT_TYPES), value: float64 (NaN when absent), device: str | None
`content_vectors`: float32 array (n_items, dim) aligned with `items`, rows of NaN where the source
gave no vector; None when the source has no vectors at all. In a build it is a memory-mapped
`.npy` in the build's scratch directory (pipelines.content_file): read it in chunks or by rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ITEM_COLUMNS = [
    "item_id",
    "title",
    "description",
    "genres",
    "tags",
    "series",
    "series_position",
    "released",
]
EVENT_COLUMNS = ["user_id", "item_id", "timestamp", "event", "value", "device"]


@dataclass
class RawCatalog:
    items: pd.DataFrame
    events: pd.DataFrame
    content_vectors: np.ndarray | None
    unknown_item_events: int
    source: str
    format: str
