"""One loaded catalog version: everything the request path reads, opened once at start-up."""

from __future__ import annotations

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
        """Open the serving version (CURRENT) of a catalog root, or a given version."""
        catalog = CatalogRoot(root).open(version)
        return await cls.open_version(catalog)

    @classmethod
    async def open_version(cls, catalog: CatalogVersion) -> Runtime:
        items = ItemCatalog.from_table(catalog.table(ITEMS))
        users = UserProfiles.from_table(catalog.table(USERS), items)
        db = await lancedb.connect_async(str(catalog.path))
        table = await db.open_table(ITEMS)
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
            ranker_model=Ranker.load_model(catalog.path),
            neighbours=_array(catalog.path / NEIGHBOURS, len(items)),
            neighbour_scores=_array(catalog.path / NEIGHBOUR_SCORES, len(items)),
        )


def _array(path: Path, rows: int) -> np.ndarray | None:
    """A model array of the version (numpy, never pickled), or None when the build made none."""
    if not path.exists():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CatalogError(f"{path} is unreadable: {exc}") from exc
    if array.shape[0] != rows:
        raise CatalogError(f"{path} has {array.shape[0]} rows for {rows} items; rebuild")
    return array
