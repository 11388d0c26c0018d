"""Writing a version's LanceDB tables (items, users, events) in batches, with scalar indexes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pandas as pd
import pyarrow as pa

from app.store import EVENTS, EVENTS_SCHEMA, ITEMS, USERS, items_schema, users_schema
from pipelines.index import create_scalar_indexes
from pipelines.stats import ItemStats, UserStats
from pipelines.steps import Step

BATCH = 100_000


def _vectors(array: np.ndarray) -> pa.FixedSizeListArray:
    array = np.ascontiguousarray(array, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(array.ravel()), array.shape[1])


def _timestamps(seconds: np.ndarray) -> pa.Array:
    seconds = np.asarray(seconds, dtype=np.int64)
    return pa.array(seconds, type=pa.int64(), mask=seconds < 0).cast(pa.timestamp("s"))


def _released(values: pd.Series) -> pa.Array:
    days = pd.to_datetime(values).to_numpy(dtype="datetime64[D]")
    return pa.array(days, type=pa.date32(), from_pandas=True)


def write_items(
    path: Path,
    items: pd.DataFrame,
    stats: ItemStats,
    content: np.ndarray,
    cf: np.ndarray,
    step: Step,
) -> Any:
    schema = items_schema(content.shape[1], cf.shape[1])
    in_cf = np.abs(cf).sum(axis=1) > 0

    def batches() -> Iterator[pa.RecordBatch]:
        for start in range(0, len(items), BATCH):
            s = slice(start, start + BATCH)
            part = items.iloc[s]
            position = pd.to_numeric(part["series_position"], errors="coerce")
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(part["item_id"].astype(str), pa.string()),
                    pa.array(np.arange(start, start + len(part), dtype=np.int32)),
                    pa.array(part["title"].astype(str), pa.string()),
                    pa.array(part["description"].astype(str), pa.string()),
                    pa.array([list(g) for g in part["genres"]], pa.list_(pa.string())),
                    pa.array(part["series"].where(part["series"].notna(), None), pa.string()),
                    pa.array(position.to_numpy(dtype=float), pa.float64(), from_pandas=True).cast(
                        pa.int32()
                    ),
                    _released(part["released"]),
                    _timestamps(stats.first_seen[s]),
                    pa.array(stats.n_events[s]),
                    pa.array(stats.n_users[s]),
                    pa.array(stats.mean_rating[s], pa.float32(), from_pandas=True),
                    pa.array(stats.popularity[s]),
                    pa.array(stats.popularity_decayed[s]),
                    pa.array(stats.popularity_pct[s]),
                    pa.array(in_cf[s]),
                    _vectors(content[s]),
                    _vectors(cf[s]),
                ],
                schema=schema,
            )
            step.advance(len(part))

    table = lancedb.connect(str(path)).create_table(ITEMS, data=batches(), schema=schema)
    create_scalar_indexes(table, btree=["item_id", "released"], label_lists=["genres"])
    return table


def write_users(
    path: Path, user_ids: pd.Index, stats: UserStats, cf: np.ndarray, step: Step
) -> Any:
    schema = users_schema(stats.content_profile.shape[1], cf.shape[1])

    def batches() -> Iterator[pa.RecordBatch]:
        for start in range(0, len(user_ids), BATCH):
            s = slice(start, start + BATCH)
            ids = user_ids[s]
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(ids.astype(str), pa.string()),
                    pa.array(np.arange(start, start + len(ids), dtype=np.int32)),
                    pa.array(stats.n_events[s]),
                    pa.array(stats.n_positive[s]),
                    _timestamps(stats.first_seen[s]),
                    _timestamps(stats.last_seen[s]),
                    pa.array(stats.active_days[s]),
                    pa.array(stats.top_genres[s], pa.list_(pa.string())),
                    pa.array(stats.genre_shares[s], pa.list_(pa.float32())),
                    pa.array(stats.recent_items[s], pa.list_(pa.string())),
                    pa.array(stats.dismissed_items[s], pa.list_(pa.string())),
                    pa.array(stats.consumed[s], pa.list_(pa.int32())),
                    pa.array(stats.history_items[s], pa.list_(pa.int32())),
                    pa.array(stats.history_weights[s], pa.list_(pa.float32())),
                    _vectors(cf[s]),
                    _vectors(stats.content_profile[s]),
                ],
                schema=schema,
            )
            step.advance(len(ids))

    table = lancedb.connect(str(path)).create_table(USERS, data=batches(), schema=schema)
    create_scalar_indexes(table, btree=["user_id"], label_lists=[])
    return table


def write_events(path: Path, events: pd.DataFrame, weights: np.ndarray, step: Step) -> Any:
    def batches() -> Iterator[pa.RecordBatch]:
        for start in range(0, len(events), BATCH):
            part = events.iloc[start : start + BATCH]
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(part["user_id"].astype(str), pa.string()),
                    pa.array(part["item_id"].astype(str), pa.string()),
                    pa.array(part["timestamp"].to_numpy(dtype=np.int64)).cast(pa.timestamp("s")),
                    pa.array(part["event"].astype(str), pa.string()),
                    pa.array(part["value"].to_numpy(dtype=float), pa.float64(), from_pandas=True),
                    pa.array(part["device"].where(part["device"].notna(), None), pa.string()),
                    pa.array(weights[start : start + BATCH], pa.float32()),
                ],
                schema=EVENTS_SCHEMA,
            )
            step.advance(len(part))

    table = lancedb.connect(str(path)).create_table(EVENTS, data=batches(), schema=EVENTS_SCHEMA)
    create_scalar_indexes(table, btree=["user_id", "item_id"], label_lists=[])
    return table
