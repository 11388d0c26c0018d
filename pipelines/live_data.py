"""What the server was told since the last build, folded into the next one.

`with_live_data(raw, root)` adds the live database of a catalog root (`<root>/live/`: items
upserted and events acknowledged while serving) to an ingested source: upserted items replace
the source's text and metadata or are added (their content vectors are used as given), live
events are appended. It returns the sequence number of the newest live event taken in: the new
version's training watermark, so the server replays only what came after.

In a build the merged content vectors are a new memory-mapped file in the build's scratch
directory, written a chunk at a time: the source's matrix is never copied or stacked whole.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pandas as pd
import pyarrow.compute as pc

from app.realtime.live_store import EVENTS, ITEMS
from app.store import CatalogRoot
from pipelines.content_file import allocate, copy_rows, fill_rows, flush, is_scratch
from pipelines.ingest.raw import EVENT_COLUMNS, RawCatalog
from pipelines.ingest.series import fill_positions


def with_live_data(
    raw: RawCatalog, root: Path, scratch: Path | None = None
) -> tuple[RawCatalog, int, dict[str, int]]:
    """The source with the live items and events of `root`; (catalog, watermark, counts).

    `scratch`: the build's scratch directory, where merged content vectors are written as a
    memory-mapped file (the source's own file there is removed once merged: it is the build's)."""
    live_dir = CatalogRoot(root).live_dir
    if not live_dir.is_dir():
        return raw, -1, {}
    db = lancedb.connect(str(live_dir.resolve()))
    items, events = _read(db, ITEMS), _read(db, EVENTS)
    counts = {"live_items": 0, "live_events": 0}
    if items is not None and len(items):
        raw = _with_items(raw, items, scratch)
        counts["live_items"] = len(items)
    watermark = -1
    if events is not None and len(events):
        watermark = int(events["seq"].max())
        known = events["item_id"].isin(set(raw.items["item_id"]))
        taken = events.loc[known]
        counts["live_events"] = len(taken)
        frame = pd.DataFrame(
            {
                "user_id": taken["user_id"].astype(str),
                "item_id": taken["item_id"].astype(str),
                "timestamp": (taken["at_ms"] // 1000).astype(np.int64),
                "event": taken["event"].astype(str),
                "value": taken["value"].astype(float),
                "device": taken["device"].where(taken["device"].notna(), None),
            }
        )[EVENT_COLUMNS]
        raw = RawCatalog(
            items=raw.items,
            events=_contiguous(pd.concat([raw.events, frame], ignore_index=True), raw.events),
            content_vectors=raw.content_vectors,
            unknown_item_events=raw.unknown_item_events + int((~known).sum()),
            source=raw.source,
            format=raw.format,
        )
    return raw, watermark, counts


def _read(db: Any, name: str) -> pd.DataFrame | None:
    """A live table as a frame, None when the server never created it."""
    try:
        table = db.open_table(name).to_arrow()
    except ValueError:  # LanceDB: "Table '...' was not found"
        return None
    if name == EVENTS:
        table = table.set_column(
            table.schema.get_field_index("at"), "at_ms", pc.cast(table["at"], "int64")
        )
    return table.to_pandas()


def _with_items(raw: RawCatalog, live: pd.DataFrame, scratch: Path | None = None) -> RawCatalog:
    items = raw.items.reset_index(drop=True).copy()
    position = pd.Index(items["item_id"]).get_indexer(live["item_id"])
    dim = len(live["content_vector"].iloc[0])
    given = raw.content_vectors
    if given is not None and given.shape[1] != dim:
        given = None  # another model's vectors: every item is embedded again by the build
    n = len(items)
    added = int((position < 0).sum())
    file = None if scratch is None else _unused(scratch / "live_content_vector.npy")
    vectors = allocate(n + added, dim, file)
    if given is None:
        fill_rows(vectors, 0, n + added)
    else:
        copy_rows(given, vectors)
    appended = n
    rows: list[dict[str, Any]] = []
    records: list[dict[Any, Any]] = live.to_dict("records")
    for row, at in zip(records, position.tolist(), strict=True):
        released = row["released"]
        values: dict[str, Any] = {
            "item_id": row["item_id"],
            "title": row["title"],
            "description": row["description"] or "",
            "genres": list(row["genres"]) if row["genres"] is not None else [],
            "series": row["series"],
            "released": pd.NaT if released is None or pd.isna(released) else pd.Timestamp(released),
        }
        vector = np.asarray(row["content_vector"], dtype=np.float32)
        if at >= 0:
            for column, value in values.items():
                items.at[at, column] = value
            vectors[at] = vector
        else:
            rows.append({**values, "tags": "", "series_position": np.nan})
            vectors[appended] = vector
            appended += 1
    flush(vectors)
    source = raw.content_vectors
    if isinstance(source, np.memmap) and is_scratch(source, scratch):
        os.unlink(str(source.filename))  # merged: 15 GB at 10M items freed
    if rows:
        items = pd.concat([items, pd.DataFrame(rows)], ignore_index=True)
        items = _contiguous(items, raw.items)
        items["series"] = items["series"].where(items["series"].notna(), None)
    items["released"] = pd.to_datetime(items["released"]).astype("datetime64[s]")
    items["series_position"] = fill_positions(
        items["series"].tolist(),
        items["series_position"].to_numpy(dtype=float),
        items["released"].to_numpy(),
        items["title"].tolist(),
    )
    return RawCatalog(
        items=items,
        events=raw.events,
        content_vectors=vectors,
        unknown_item_events=raw.unknown_item_events,
        source=raw.source,
        format=raw.format,
    )


def _unused(path: Path) -> Path:
    """`path`, or the first `path.N` that does not exist (a second merge in one scratch)."""
    found, n = path, 0
    while found.exists():
        n += 1
        found = path.with_suffix(f".{n}.npy")
    return found


def _contiguous(frame: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    """One contiguous column each, of `like`'s dtypes: the table writers expect single chunks."""
    return pd.DataFrame(
        {c: pd.Series(frame[c].tolist(), dtype=like[c].dtype) for c in like.columns}
    )
