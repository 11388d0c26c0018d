"""Items added or changed while serving: embedded online, kept live, applied to the version.

An upsert is embedded with the text model the build uses (app.embedding), written to the live
`items` table (the record that survives rebuilds), then applied to the serving version: new items
are appended to its LanceDB items table (next item_index, no CF factors, zero CF vector, first
seen now), changed ones are updated in place (text, genres, series, release, content vector;
their statistics and CF factors stay). The in-memory catalog is rebuilt from the written rows and
swapped in by the engine, so the next request reaches the item through every source and
similarItems. Rows appended after an ANN index was built are searched exactly until the index
is brought up to date (`refresh_index`, LanceDB optimize, in the background).
"""

from __future__ import annotations

import asyncio
import logging
import time
import unicodedata
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.embedding import TextEncoder, item_text
from app.errors import BadRequest, ConfigError
from app.realtime.live_store import ITEMS, LiveDatabase, items_schema
from app.realtime.records import ItemDraft
from app.runtime import Runtime, open_items_table

log = logging.getLogger("shortlist.realtime")

MAX_ID_LENGTH = 256
MAX_LABEL_LENGTH = 64
MAX_TITLE_LENGTH = 500
MAX_DESCRIPTION_LENGTH = 20_000
MAX_GENRES = 20
EARLIEST_RELEASE = date(1800, 1, 1)
MAX_RELEASE_AHEAD_DAYS = 3650
EDITABLE = ("title", "description", "genres", "series", "released", "content_vector")
KEEP_INDEX_VERSIONS_FOR = timedelta(minutes=10)  # requests may still read an older table version
CHUNK = 500
SMALL_FRAGMENTS = 32  # appends (one fragment each) that call for a compaction


class ItemUpserts:
    def __init__(
        self, database: LiveDatabase, text_model: str, threads: int, batch_size: int
    ) -> None:
        self.database = database
        self.text_model = text_model
        self.threads = threads
        self.batch_size = batch_size
        self._encoder: TextEncoder | None = None
        self._encoder_lock = asyncio.Lock()

    async def encoder(self) -> TextEncoder:
        """The text model, loaded on first use (seconds), off the event loop."""
        async with self._encoder_lock:
            if self._encoder is None:
                self._encoder = await asyncio.to_thread(TextEncoder, self.text_model, self.threads)
            return self._encoder

    async def embed(self, drafts: list[ItemDraft], content_dim: int) -> np.ndarray:
        encoder = await self.encoder()
        if encoder.dim != content_dim:
            raise ConfigError(
                f"text model {self.text_model} makes {encoder.dim}-d vectors but the catalog's "
                f"content vectors have {content_dim}; set SHORTLIST_TEXT_MODEL to the build's model"
            )
        texts = [item_text(d.title, d.genres, d.description or "") for d in drafts]
        return await asyncio.to_thread(encoder.encode, texts, self.batch_size)

    async def record(self, drafts: list[ItemDraft], vectors: np.ndarray) -> pa.Table:
        """Store the items durably in the live items table (insert or replace by item_id)."""
        rows = live_rows(drafts, vectors, self.text_model)
        table = await self.database.table(ITEMS, rows.schema)
        await (
            table.merge_insert("item_id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(rows)
        )
        return rows

    async def stored(self) -> pa.Table | None:
        """Every live item, or None when none was ever upserted."""
        table = await self.database.existing(ITEMS)
        if table is None:
            return None
        rows = await table.query().to_arrow()
        return rows if rows.num_rows else None

    async def apply(self, runtime: Runtime, rows: pa.Table) -> tuple[Runtime, list[str], list[str]]:
        """Bring the version's items up to these live rows; returns (runtime, inserted, updated).

        What the version's table holds decides what is new (not the in-memory catalog), and the
        catalog is grown from every table row it lacks: a write that landed in the table but
        never reached memory (a failure in between) is picked up by the next one.
        """
        table = await open_items_table(runtime.path)
        schema = await table.schema()
        dim = schema.field("content_vector").type.list_size
        given = rows.schema.field("content_vector").type.list_size
        if given != dim:
            raise ConfigError(f"upserted items have {given}-d content vectors, the catalog {dim}-d")
        ids = rows["item_id"].to_pylist()
        present = set((await _rows_of(table, ids))["item_id"].to_pylist())
        in_table = pa.array([i in present for i in ids], pa.bool_())
        changed = await _changed(table, rows.filter(in_table))
        fresh = rows.filter(pc.invert(in_table))
        if changed.num_rows:
            editable = changed.select(["item_id", *EDITABLE])
            await table.merge_insert("item_id").when_matched_update_all().execute(editable)
        if fresh.num_rows:
            first = int(await table.count_rows())
            await table.add(_new_version_rows(fresh, schema, first))
        touched = changed["item_id"].to_pylist() + fresh["item_id"].to_pylist()
        return (
            await self.follow(runtime, touched, table),
            fresh["item_id"].to_pylist(),
            changed["item_id"].to_pylist(),
        )

    async def follow(self, runtime: Runtime, item_ids: list[str], table: Any = None) -> Runtime:
        """The runtime with these items, as the version's table holds them, in its catalog, and
        every table row the catalog lacks (items another replica appended). The same runtime
        when there is nothing to take in."""
        table = table if table is not None else await open_items_table(runtime.path)
        catalog = runtime.items
        lagging = await table.query().where(f"item_index >= {len(catalog)}").to_arrow()
        if not item_ids and not lagging.num_rows:
            return runtime
        written = await _rows_of(table, item_ids)
        written = pa.concat_tables(
            [written.filter(pc.invert(pc.is_in(written["item_id"], lagging["item_id"]))), lagging]
        )
        if not written.num_rows:
            return runtime
        grown = await asyncio.to_thread(catalog.with_rows, written)
        return await runtime.with_items(grown)

    async def refresh_index(self, path: Path, unindexed_at_least: int) -> bool:
        """Fold appended rows into the version's indexes and small fragments into big ones
        (LanceDB optimize), once `unindexed_at_least` rows wait outside an index or as many
        appends left small fragments behind. Returns whether it ran."""
        table = await open_items_table(path)
        waiting = max((i.num_unindexed_rows or 0 for i in await table.list_indices()), default=0)
        small = int((await table.stats())["fragment_stats"]["num_small_fragments"])
        if waiting < unindexed_at_least and small < SMALL_FRAGMENTS:
            return False
        started = time.perf_counter()
        await table.optimize(cleanup_older_than=KEEP_INDEX_VERSIONS_FOR)
        log.info(
            "optimized the items table (%d rows waited outside indexes, %d small fragments) "
            "in %.0f ms",
            waiting,
            small,
            (time.perf_counter() - started) * 1000,
        )
        return True


def check_drafts(drafts: list[ItemDraft], limit: int) -> list[ItemDraft]:
    """The drafts, checked (BadRequest names the first bad one), the last of each id kept."""
    if not drafts:
        raise BadRequest("items must hold at least one item")
    if len(drafts) > limit:
        raise BadRequest(f"at most {limit} items per call, got {len(drafts)}")
    latest = date.today() + timedelta(days=MAX_RELEASE_AHEAD_DAYS)
    for n, draft in enumerate(drafts):
        where = f"items[{n}]"
        _text(draft.item_id, f"{where}.itemId", MAX_ID_LENGTH)
        _text(draft.title, f"{where}.title", MAX_TITLE_LENGTH)
        if draft.description:
            _text(draft.description, f"{where}.description", MAX_DESCRIPTION_LENGTH, True)
        if draft.series is not None:
            _text(draft.series, f"{where}.series", MAX_TITLE_LENGTH)
        if len(draft.genres) > MAX_GENRES:
            raise BadRequest(f"{where}.genres takes at most {MAX_GENRES} genres")
        for genre in draft.genres:
            _text(genre, f"{where}.genres", MAX_LABEL_LENGTH)
        if draft.released is not None and not EARLIEST_RELEASE <= draft.released <= latest:
            raise BadRequest(f"{where}.released must lie between {EARLIEST_RELEASE} and {latest}")
    return list({d.item_id: d for d in drafts}.values())


def _text(value: str, what: str, limit: int, multiline: bool = False) -> None:
    if not value or not value.strip() or len(value) > limit:
        raise BadRequest(f"{what} must be 1 to {limit} characters, not blank")
    allowed = {"\n", "\t"} if multiline else set()
    if any(unicodedata.category(c) in ("Cc", "Cf") and c not in allowed for c in value):
        raise BadRequest(f"{what} contains control or formatting characters")


def live_rows(drafts: list[ItemDraft], vectors: np.ndarray, text_model: str) -> pa.Table:
    dim = int(vectors.shape[1])
    now = int(time.time() * 1000)
    return pa.Table.from_arrays(
        [
            pa.array([d.item_id for d in drafts], pa.string()),
            pa.array([d.title for d in drafts], pa.string()),
            pa.array([d.description for d in drafts], pa.string()),
            pa.array([list(d.genres) for d in drafts], pa.list_(pa.string())),
            pa.array([d.series for d in drafts], pa.string()),
            pa.array([d.released for d in drafts], pa.date32()),
            pa.FixedSizeListArray.from_arrays(
                pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel()), dim
            ),
            pa.array([text_model] * len(drafts), pa.string()),
            pa.array([now] * len(drafts), pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        ],
        schema=items_schema(dim),
    )


async def _rows_of(table: Any, ids: list[str]) -> pa.Table:
    """The table's rows of these item ids (any order)."""
    parts = [(await table.schema()).empty_table()]
    for start in range(0, len(ids), CHUNK):
        listed = ", ".join("'" + i.replace("'", "''") + "'" for i in ids[start : start + CHUNK])
        parts.append(await table.query().where(f"item_id IN ({listed})").to_arrow())
    return pa.concat_tables(parts)


async def _changed(table: Any, live: pa.Table) -> pa.Table:
    """The live rows whose editable fields differ from the version's."""
    if not live.num_rows:
        return live
    current = await _rows_of(table, live["item_id"].to_pylist())
    by_id = {row["item_id"]: row for row in current.select(["item_id", *EDITABLE]).to_pylist()}
    differs = []
    for row in live.select(["item_id", *EDITABLE]).to_pylist():
        now = by_id.get(row["item_id"])
        differs.append(now is None or any(not _same(row[f], now[f]) for f in EDITABLE))
    return live.filter(pa.array(differs, pa.bool_()))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and a and isinstance(a[0], float):
        return b is not None and np.allclose(a, b, atol=1e-6)
    return bool((a or None) == (b or None))


def _new_version_rows(fresh: pa.Table, schema: pa.Schema, first_index: int) -> pa.Table:
    """Full rows of the version's items table for items it has never had."""
    n = fresh.num_rows
    now = datetime.now(tz=UTC).replace(tzinfo=None)
    given: dict[str, pa.Array] = {
        "item_id": fresh["item_id"].combine_chunks(),
        "item_index": pa.array(np.arange(first_index, first_index + n, dtype=np.int32)),
        "title": fresh["title"].combine_chunks(),
        "description": fresh["description"].combine_chunks(),
        "genres": fresh["genres"].combine_chunks(),
        "series": fresh["series"].combine_chunks(),
        "released": fresh["released"].combine_chunks(),
        "first_seen": pa.array([now] * n, pa.timestamp("s")),
        "n_events": pa.array(np.zeros(n, dtype=np.int64)),
        "n_users": pa.array(np.zeros(n, dtype=np.int64)),
        "popularity": pa.array(np.zeros(n, dtype=np.float32)),
        "popularity_decayed": pa.array(np.zeros(n, dtype=np.float32)),
        "popularity_pct": pa.array(np.zeros(n, dtype=np.float32)),
        "in_cf": pa.array(np.zeros(n, dtype=bool)),
        "content_vector": fresh["content_vector"].combine_chunks(),
    }
    columns = []
    for f in schema:
        if f.name in given:
            columns.append(given[f.name].cast(f.type))
        elif f.name == "cf_vector":
            size = f.type.list_size
            columns.append(
                pa.FixedSizeListArray.from_arrays(
                    pa.array(np.zeros(n * size, dtype=np.float32)), size
                ).cast(f.type)
            )
        else:  # statistics the build makes and a new item does not have yet
            columns.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(columns, schema=schema)
