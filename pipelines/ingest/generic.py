"""The generic format: a directory with items.(csv|parquet) and events.(csv|parquet).

items: item_id (required); title, description, genres (pipe-separated, or a list in parquet),
tags, series, series_position, released (ISO date or datetime, or a year) and, in parquet only,
content_vector (a list of floats, one dimension for all rows, null for none).
events: user_id, item_id, timestamp (required: unix seconds or ISO 8601, naive = UTC); event
(default "view"), value, device. Other columns are ignored; when both a CSV and a parquet file
exist, the parquet one is read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from app.errors import InputError
from pipelines.ingest.content_vectors import read_content_vectors
from pipelines.ingest.files import read_table
from pipelines.ingest.raw import RawCatalog
from pipelines.ingest.series import fill_positions
from pipelines.ingest.validate import (
    as_text,
    first_bad_row,
    first_duplicate,
    is_empty,
    make_events,
    make_items,
    parse_event_types,
    parse_genres,
    parse_ids,
    parse_released,
    parse_timestamps,
    parse_values,
    require_columns,
)

ITEM_FIELDS = [
    "item_id", "title", "description", "genres", "tags", "series", "series_position", "released",
    "content_vector",
]  # fmt: skip
EVENT_FIELDS = ["user_id", "item_id", "timestamp", "event", "value", "device"]


def load_generic(directory: Path, scratch: Path | None = None) -> RawCatalog:
    """`scratch`: a directory where the content vectors are written as a memory-mapped `.npy`
    (pipelines.content_file); without one they are read into memory."""
    items_path, events_path = _source_file(directory, "items"), _source_file(directory, "events")
    items, vectors = _load_items(items_path, scratch)
    events, unknown = _load_events(events_path, items["item_id"])
    return RawCatalog(items, events, vectors, unknown, str(directory), "generic")


def _source_file(directory: Path, stem: str) -> Path:
    for suffix in (".parquet", ".csv"):
        path = directory / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise InputError(f"missing {stem}.csv or {stem}.parquet in {directory}", file=f"{stem}.csv")


def _load_items(path: Path, scratch: Path | None) -> tuple[pd.DataFrame, np.ndarray | None]:
    # The vectors are read apart, batch by batch (content_vectors), never as one Arrow column.
    table, names = read_table(path, [f for f in ITEM_FIELDS if f != "content_vector"])
    file = path.name
    require_columns(names, ["item_id"], file)
    if table.num_rows == 0:
        raise InputError("the file has no rows", file=file)
    ids = parse_ids(table["item_id"], file, "item_id")
    duplicate = first_duplicate(ids)
    if duplicate is not None:
        raise InputError(
            f"duplicate item_id {ids[duplicate - 1].as_py()!r}",
            file=file,
            row=duplicate,
            column="item_id",
        )
    n = table.num_rows
    columns = set(table.column_names)

    def text(name: str) -> pa.ChunkedArray:
        if name not in columns:
            return pa.chunked_array([pa.array([""] * n, pa.string())])
        col = table[name]
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            col = pc.binary_join(col, ", ")
        return pc.fill_null(as_text(col), "")

    title = text("title")
    title = pc.if_else(is_empty(title), ids, title)
    series_text = text("series")
    series = pc.if_else(
        is_empty(series_text), pa.scalar(None, pa.string()), series_text
    ).to_pylist()
    released = (
        parse_released(table["released"], file, "released")
        if "released" in columns
        else np.full(n, np.datetime64("NaT"), dtype="datetime64[s]")
    )
    positions = np.full(n, np.nan)
    if "series_position" in columns:
        positions = parse_values(table["series_position"], file, "series_position")
        fractional = ~np.isnan(positions) & (positions != np.floor(positions))
        if fractional.any():
            row = first_bad_row(fractional)
            raise InputError(
                f"series_position must be a whole number, got {positions[row - 1]}",
                file=file,
                row=row,
                column="series_position",
            )
    titles = title.to_pylist()
    items = make_items(
        {
            "item_id": ids.to_pandas(),
            "title": titles,
            "description": text("description").to_pandas(),
            "genres": parse_genres(table["genres"])
            if "genres" in columns
            else [[] for _ in range(n)],
            "tags": text("tags").to_pandas(),
            "series": series,
            "series_position": fill_positions(series, positions, released, titles),
            "released": released,
        }
    )
    vectors = None
    if "content_vector" in names:
        if path.suffix != ".parquet":
            raise InputError(
                "content_vector needs a parquet file", file=file, column="content_vector"
            )
        del table
        vectors = read_content_vectors(
            path, None if scratch is None else scratch / "source_content_vector.npy"
        )
    return items, vectors


def _load_events(path: Path, known_items: pd.Series) -> tuple[pd.DataFrame, int]:
    table, names = read_table(path, EVENT_FIELDS)
    file = path.name
    require_columns(names, ["user_id", "item_id", "timestamp"], file)
    if table.num_rows == 0:
        raise InputError("the file has no rows", file=file)
    columns = set(table.column_names)
    return make_events(
        user_id=parse_ids(table["user_id"], file, "user_id"),
        item_id=parse_ids(table["item_id"], file, "item_id"),
        timestamp=parse_timestamps(table["timestamp"], file, "timestamp"),
        event=parse_event_types(table["event"], file, "event") if "event" in columns else "view",
        value=parse_values(table["value"], file, "value")
        if "value" in columns
        else np.full(table.num_rows, np.nan),
        device=table["device"] if "device" in columns else None,
        known_items=known_items,
    )
