"""One loaded catalog version: everything the request path reads, opened once at start-up."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lancedb
import numpy as np

from app.candidates.ann import VectorIndex, memory_search
from app.candidates.fusion import Fusion, ReciprocalRank
from app.candidates.fusion import from_manifest as fusion_from_manifest
from app.candidates.memory_search import InMemorySearch, NormOrderedSearch
from app.candidates.partitioned_search import KIND as PARTITIONED
from app.candidates.partitioned_search import Partitions
from app.contributions import TreeContributions
from app.deadlines import Fault
from app.errors import CatalogError
from app.features import FEATURE_NAMES
from app.heap import release_free_memory
from app.item_relations import DenseRelations, ItemRelations, NeighbourRelations
from app.items import ItemCatalog
from app.mapped_rows import populate
from app.quantized_rows import CONTENT_INT8_ABOVE, as_served
from app.ranking import MODEL_FILE, Ranker
from app.store import ITEMS, MANIFEST, RELATIONS, USERS, CatalogRoot, CatalogVersion, Manifest
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
    relations: dict[str, ItemRelations] = field(default_factory=dict)  # by name (RELATIONS)
    fusion: Fusion = field(default_factory=ReciprocalRank)
    explainer: TreeContributions | None = None  # the ranker's feature contributions

    @classmethod
    async def open(
        cls,
        root: Path,
        version: str | None = None,
        faults: Mapping[str, Fault] | None = None,
        content_int8_above: int = CONTENT_INT8_ABOVE,
    ) -> Runtime:
        """Open the serving version (CURRENT) of a catalog root, or a given version.

        The reading and decoding run in a worker thread, so a server loading a new version keeps
        answering requests meanwhile. `faults` (tests only) are injected into its ANN searches.
        Catalogs of more than `content_int8_above` items hold their content vectors as int8
        codes in memory (app.quantized_rows) instead of reading the version's file.
        """
        catalog = await asyncio.to_thread(CatalogRoot(root).open, version)
        return await cls.open_version(catalog, faults, content_int8_above)

    @classmethod
    async def open_version(
        cls,
        catalog: CatalogVersion,
        faults: Mapping[str, Fault] | None = None,
        content_int8_above: int = CONTENT_INT8_ABOVE,
    ) -> Runtime:
        try:
            items, users, ranker_model, explainer, relations = await asyncio.to_thread(
                _read_models, catalog, content_int8_above
            )
            table = await open_items_table(catalog.path)
        except (OSError, RuntimeError, ValueError) as exc:  # damaged tables: LanceDB, Arrow
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CatalogError(f"cannot read the catalog version {catalog.path}: {first}") from exc
        indexes = catalog.manifest.indexes
        missing = {"cf_vector", "content_vector"} - set(indexes)
        if missing:
            raise CatalogError(f"manifest of {catalog.path} lacks index choices for {missing}")
        cf_parts = await asyncio.to_thread(_partitions, catalog, "cf_vector")
        content_parts = await asyncio.to_thread(_partitions, catalog, "content_vector")
        # one search at a time, the catalog's own CF copy dropped and the heap trimmed between:
        # at 10M items the load peaked 2.5 GB over the machine's 24 GB otherwise
        cf_memory = await asyncio.to_thread(
            memory_search, items.cf, indexes["cf_vector"].search, cf_parts
        )
        items = _cf_from_search(items, cf_memory)
        await asyncio.to_thread(release_free_memory)
        content_memory = await asyncio.to_thread(
            memory_search, items.content, indexes["content_vector"].search, content_parts
        )
        await asyncio.to_thread(_read_in, items, relations)
        return cls(
            version=catalog.manifest.version,
            path=catalog.path,
            manifest=catalog.manifest,
            items=items,
            users=users,
            cf_index=VectorIndex(
                table,
                "cf_vector",
                indexes["cf_vector"].search,
                indexes["cf_vector"].k,
                dict(faults or {}),
                cf_memory,
                cf_parts,
            ),
            content_index=VectorIndex(
                table,
                "content_vector",
                indexes["content_vector"].search,
                indexes["content_vector"].k,
                dict(faults or {}),
                content_memory,
                content_parts,
            ),
            ranker_model=ranker_model,
            relations=relations,
            fusion=_fusion(catalog),
            explainer=explainer,
        )

    async def with_items(self, items: ItemCatalog) -> Runtime:
        """This version with a grown or updated item catalog (items upserted while serving).

        The items table is opened afresh, so its ANN searches see exactly the rows `items` holds;
        the runtime this one replaces keeps its own handle, pinned at the older table version.
        Items added after the build have no item-item relations: the tables skip them.
        """
        table = await open_items_table(self.path)
        cf_memory, content_memory = await asyncio.to_thread(
            lambda: (
                memory_search(items.cf, self.cf_index.search, self.cf_index.partitions),
                memory_search(
                    items.content,
                    self.content_index.search,
                    self.content_index.partitions,
                    self.content_index.memory,
                ),
            )
        )
        return dataclasses.replace(
            self,
            items=_cf_from_search(items, cf_memory),
            cf_index=dataclasses.replace(self.cf_index, table=table, memory=cf_memory),
            content_index=dataclasses.replace(
                self.content_index, table=table, memory=content_memory
            ),
        )


def _cf_from_search(items: ItemCatalog, search: InMemorySearch | None) -> ItemCatalog:
    """The catalog reading its CF factors from the norm-ordered search's sorted copy of them,
    when there is one: the catalog's own copy in item order goes (2.4 GB at 10M items)."""
    if not isinstance(search, NormOrderedSearch):
        return items
    by_item = search.by_item()
    return items if by_item is None else dataclasses.replace(items, cf=by_item)


async def open_items_table(path: Path) -> Any:
    """An async handle on a version's items table at its newest table version."""
    db = await lancedb.connect_async(str(path.resolve()))
    return await db.open_table(ITEMS)


def _read_models(
    catalog: CatalogVersion, content_int8_above: int
) -> tuple[
    ItemCatalog, UserProfiles, Any | None, TreeContributions | None, dict[str, ItemRelations]
]:
    _check_model_files(catalog)
    content_file = catalog.manifest.content_file
    items = ItemCatalog.from_table(
        catalog.table(ITEMS),
        catalog.path / content_file if content_file else None,
        catalog.manifest.items_table_version,
    )
    # what decoding the table freed (7.4 GB at 10M items, in glibc's small pieces), before the
    # codes and the users take more
    release_free_memory()
    items.content = as_served(items.content, content_int8_above)
    users = UserProfiles.from_table(catalog.table(USERS), items)
    relations = _relations(catalog.path, len(items))
    model = Ranker.load_model(catalog.path)
    explainer = None if model is None else TreeContributions.of(model, len(FEATURE_NAMES))
    return items, users, model, explainer, relations


def _partitions(catalog: CatalogVersion, column: str) -> Partitions | None:
    """The partitions of a column the build chose to search partitioned in memory."""
    if catalog.manifest.indexes[column].kind != PARTITIONED:
        return None
    try:
        return Partitions.load(catalog.path, column)
    except (OSError, ValueError, KeyError) as exc:
        raise CatalogError(
            f"{Partitions.file(catalog.path, column)} is missing or unreadable ({exc}); its "
            "manifest chose a partitioned search for it: rebuild or `shortlist reindex`"
        ) from exc


def _check_model_files(catalog: CatalogVersion) -> None:
    """Every model file the manifest says the build made is there (a missing one is a broken
    copy, not a build without that model: serving without it would be silently worse)."""
    manifest = catalog.manifest
    needed = [str(manifest.ranker.get("file", MODEL_FILE))] if manifest.ranker else []
    if manifest.content_file:
        needed.append(manifest.content_file)
    for kind in manifest.relations:
        needed += RELATIONS.get(kind, ())
    missing = [name for name in needed if not (catalog.path / name).exists()]
    if missing:
        raise CatalogError(
            f"{catalog.path} lacks {', '.join(missing)}, listed in its {MANIFEST}: rebuild the "
            "catalog or copy the whole version directory"
        )


def _fusion(catalog: CatalogVersion) -> Fusion:
    try:
        return fusion_from_manifest(catalog.manifest.fusion)
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogError(f"manifest of {catalog.path} has an unreadable fusion: {exc}") from exc


def _relations(path: Path, rows: int) -> dict[str, ItemRelations]:
    """The version's item-item relation tables; a build that made none of a kind has none."""
    found: dict[str, ItemRelations] = {}
    knn_file, knn_weights_file = RELATIONS["item_knn"]
    ease_file, ease_weights_file = RELATIONS["ease"]
    try:
        # (items, k) each, 4 GB together at 10M items: mapped, not read (see _array)
        neighbours = _array(path / knn_file, rows, mapped=True)
        weights = _array(path / knn_weights_file, rows, mapped=True)
        if neighbours is not None and weights is not None:
            found["item_knn"] = NeighbourRelations(neighbours, weights)
        covered = _array(path / ease_file)
        weights = _array(path / ease_weights_file)
        if covered is not None and weights is not None:
            if len(covered) and (covered.min() < 0 or covered.max() >= rows):
                raise ValueError(f"covered items outside the {rows} items")
            found["ease"] = DenseRelations(covered.astype(np.int64), weights)
            top = _array(path / RELATIONS["ease_top"][1])
            found["ease_top"] = (
                found["ease"] if top is None else DenseRelations(covered.astype(np.int64), top)
            )
    except ValueError as exc:
        raise CatalogError(f"{path}: item relations are inconsistent: {exc}") from exc
    return found


def _array(path: Path, rows: int | None = None, mapped: bool = False) -> np.ndarray | None:
    """A model array of the version (numpy, never pickled), or None when the build made none.

    `mapped`: memory-mapped read-only instead of read. For arrays that grow with the catalog and
    are read a few rows a request (the item neighbours): the pages a request touches come from
    the page cache, which every worker and replica on the host shares, and the rest are never
    read; a version directory is never written once published, so the mapping stays valid."""
    if not path.exists():
        return None
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r" if mapped else None)
    except (OSError, ValueError) as exc:
        raise CatalogError(f"{path} is unreadable: {exc}") from exc
    # fewer rows than items is fine: items upserted after the build come last, unrelated
    if rows is not None and array.shape[0] > rows:
        raise CatalogError(f"{path} has {array.shape[0]} rows for {rows} items; rebuild")
    return array


def _read_in(items: ItemCatalog, relations: dict[str, ItemRelations]) -> None:
    """The version's mapped files that requests read (the content vectors when not held as
    codes, the item neighbours) mapped into this process now, if they fit beside the memory
    available: no first requests reading them from disk a page at a time. Last, once the
    searches hold their memory: what is mapped before would be the first to go for it."""
    mapped = [items.content]
    for table in relations.values():
        if isinstance(table, NeighbourRelations):
            mapped += [table.neighbours, table.weights]
    for matrix in mapped:
        populate(matrix)
