"""One loaded catalog version: everything the request path reads, opened once at start-up."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lancedb
import numpy as np

from app.candidates.ann import VectorIndex
from app.errors import CatalogError
from app.items import ItemCatalog
from app.ranking import Ranker
from app.store import (
    ITEMS,
    NEIGHBOUR_SCORES,
    NEIGHBOURS,
    USERS,
    CatalogRoot,
    CatalogVersion,
    Manifest,
)
from app.users import UserProfiles


@dataclass
class Runtime:
    version: str
    path: Path
    manifest: Manifest
    items: ItemCatalog
    users: UserProfiles
    cf_index: VectorIndex
    content_index: VectorIndex
    ranker_model: Any | None
    neighbours: np.ndarray | None = None  # (n_items, k) item_index, -1 padded
    neighbour_scores: np.ndarray | None = None

    @classmethod
    async def open(cls, root: Path, version: str | None = None) -> Runtime:
        """Open the serving version (CURRENT) of a catalog root, or a given version.

        The reading and decoding run in a worker thread, so a server loading a new version keeps
        answering requests meanwhile.
        """
        catalog = await asyncio.to_thread(CatalogRoot(root).open, version)
        return await cls.open_version(catalog)

    @classmethod
    async def open_version(cls, catalog: CatalogVersion) -> Runtime:
        items, users, ranker_model = await asyncio.to_thread(_read_models, catalog)
        table = await open_items_table(catalog.path)
        indexes = catalog.manifest.indexes
        missing = {"cf_vector", "content_vector"} - set(indexes)
        if missing:
            raise CatalogError(f"manifest of {catalog.path} lacks index choices for {missing}")
        return cls(
            version=catalog.manifest.version,
            path=catalog.path,
            manifest=catalog.manifest,
            items=items,
            users=users,
            cf_index=VectorIndex(
                table, "cf_vector", indexes["cf_vector"].search, indexes["cf_vector"].k
            ),
            content_index=VectorIndex(
                table,
                "content_vector",
                indexes["content_vector"].search,
                indexes["content_vector"].k,
            ),
            ranker_model=ranker_model,
            neighbours=_array(catalog.path / NEIGHBOURS, len(items), -1),
            neighbour_scores=_array(catalog.path / NEIGHBOUR_SCORES, len(items), 0),
        )

    async def with_items(self, items: ItemCatalog) -> Runtime:
        """This version with a grown or updated item catalog (items upserted while serving).

        The items table is opened afresh, so its ANN searches see exactly the rows `items` holds;
        the runtime this one replaces keeps its own handle, pinned at the older table version.
        """
        table = await open_items_table(self.path)
        return dataclasses.replace(
            self,
            items=items,
            cf_index=dataclasses.replace(self.cf_index, table=table),
            content_index=dataclasses.replace(self.content_index, table=table),
            neighbours=_padded(self.neighbours, len(items), -1),
            neighbour_scores=_padded(self.neighbour_scores, len(items), 0),
        )


async def open_items_table(path: Path) -> Any:
    """An async handle on a version's items table at its newest table version."""
    db = await lancedb.connect_async(str(path.resolve()))
    return await db.open_table(ITEMS)


def _read_models(catalog: CatalogVersion) -> tuple[ItemCatalog, UserProfiles, Any | None]:
    items = ItemCatalog.from_table(catalog.table(ITEMS))
    users = UserProfiles.from_table(catalog.table(USERS), items)
    return items, users, Ranker.load_model(catalog.path)


def _array(path: Path, rows: int, fill: float) -> np.ndarray | None:
    """A model array of the version (numpy, never pickled), or None when the build made none.

    Items upserted after the build have no row of their own: they get `fill` rows.
    """
    if not path.exists():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CatalogError(f"{path} is unreadable: {exc}") from exc
    if array.shape[0] > rows:
        raise CatalogError(f"{path} has {array.shape[0]} rows for {rows} items; rebuild")
    return _padded(array, rows, fill)


def _padded(array: np.ndarray | None, rows: int, fill: float) -> np.ndarray | None:
    if array is None or array.shape[0] >= rows:
        return array
    pad = np.full((rows - array.shape[0], *array.shape[1:]), fill, dtype=array.dtype)
    return np.concatenate([array, pad])
