"""The live database beside the built versions: `<db_path>/live/`, tables `events` and `items`.

A build replaces versions; what the server was told since (acknowledged events, upserted items)
lives here, so it survives restarts, rebuilds and model swaps. Rows are Arrow; nothing is pickled.

Durability: a LanceDB append returns once its data files and its new manifest are written and
renamed into place. Lance writes local files through `object_store`'s local file system, which
does not fsync, so on its own a returned append survives a killed process (the bytes are in the
kernel's page cache) but not a power cut or kernel crash. `TableSync` closes that gap: it fsyncs
the files a write created and the directories naming them before the write is acknowledged.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa

from app.errors import CatalogError, ShortlistError

EVENTS, ITEMS = "events", "items"

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("event", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("weight", pa.float32(), nullable=False),
        pa.field("at", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("received_at", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("device", pa.string()),
        pa.field("session_id", pa.string()),
    ]
)


def items_schema(content_dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("item_id", pa.string(), nullable=False),
            pa.field("title", pa.string(), nullable=False),
            pa.field("description", pa.string()),
            pa.field("genres", pa.list_(pa.string())),
            pa.field("series", pa.string()),
            pa.field("released", pa.date32()),
            pa.field("content_vector", pa.list_(pa.float32(), content_dim)),
            pa.field("text_model", pa.string()),
            pa.field("updated_at", pa.timestamp("ms", tz="UTC"), nullable=False),
        ]
    )


class LiveStoreError(ShortlistError):
    """The live database could not take a write; nothing was acknowledged."""

    code = "LIVE_STORE_UNAVAILABLE"


@dataclass
class LiveDatabase:
    path: Path
    db: Any  # lancedb AsyncConnection

    @classmethod
    async def open(cls, path: Path, shared: bool = False) -> LiveDatabase:
        """`shared`: other processes write it too, so every read checks for their commits."""
        try:
            path.mkdir(parents=True, exist_ok=True)
            consistency = timedelta(0) if shared else None
            db = await lancedb.connect_async(
                str(path.resolve()), read_consistency_interval=consistency
            )
            return cls(path, db)
        except OSError as exc:
            raise CatalogError(
                f"cannot open the live database at {path}: {exc}; the catalog root must be "
                "writable by the server"
            ) from exc

    async def table(self, name: str, schema: pa.Schema) -> Any:
        """The table, created empty with `schema` if missing."""
        found = await self.existing(name)
        if found is not None:
            return found
        return await self.db.create_table(name, schema=schema, exist_ok=True)

    async def existing(self, name: str) -> Any | None:
        """The table, or None when it was never created."""
        try:
            return await self.db.open_table(name)
        except ValueError:  # LanceDB: "Table '...' was not found"
            return None

    def table_dir(self, name: str) -> Path:
        return self.path / f"{name}.lance"


class TableSync:
    """fsync the files a Lance table gained since the last call, then their directories.

    Lance never rewrites a data file or a manifest in place (every write adds new files), so
    syncing the new names and their directory entries makes a returned write durable. The
    fsyncs of one round run concurrently: the file system commits them together (one journal
    commit instead of one per file on ext4).
    """

    def __init__(self, table_dir: Path) -> None:
        self.table_dir = table_dir
        self._seen = self._files()

    def _files(self) -> set[Path]:
        found: set[Path] = set()
        if not self.table_dir.exists():
            return found
        for root, _, names in os.walk(self.table_dir):
            found.update(Path(root) / n for n in names)
        return found

    async def __call__(self) -> int:
        """Sync what is new; returns how many files were synced."""
        files = await asyncio.to_thread(self._files)
        new = files - self._seen
        await asyncio.gather(*(asyncio.to_thread(_fsync, path) for path in new))
        directories = {path.parent for path in new} | {self.table_dir}
        await asyncio.gather(*(asyncio.to_thread(_fsync, d) for d in directories))
        self._seen = files
        return len(new)


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # removed meanwhile (an old version cleaned up)
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
