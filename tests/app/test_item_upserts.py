"""Applying upserted items to a version's LanceDB table: consistent views, index refresh."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pytest
from lancedb.index import IvfHnswSq

from app.candidates.ann import VectorIndex
from app.errors import BadRequest
from app.item_relations import NeighbourRelations
from app.items import ItemCatalog
from app.realtime.item_upserts import ItemUpserts, check_drafts, live_rows
from app.realtime.live_store import LiveDatabase
from app.realtime.records import ItemDraft
from app.runtime import Runtime, open_items_table
from tests.app.test_catalog_growth import CONTENT_DIM, item_rows

EXACT = {"exact": 1}


async def version(path: Path, rows: int, indexed: bool = False) -> Runtime:
    """A minimal serving version: an items table and the runtime reading it."""
    path.mkdir(parents=True)
    db = await lancedb.connect_async(str(path))
    table = await db.create_table("items", data=item_rows(list(range(rows))))
    if indexed:
        config = IvfHnswSq(distance_type="dot", num_partitions=1)
        await table.create_index("content_vector", config=config)
    table = await open_items_table(path)
    return Runtime(
        version="v1",
        path=path,
        manifest=None,  # type: ignore[arg-type]
        items=ItemCatalog.from_arrow(await table.to_arrow()),
        users=None,  # type: ignore[arg-type]
        cf_index=VectorIndex(table, "cf_vector", EXACT),
        content_index=VectorIndex(table, "content_vector", EXACT),
        ranker_model=None,
        relations={
            "item_knn": NeighbourRelations(
                np.full((rows, 3), -1, dtype=np.int32), np.zeros((rows, 3), dtype=np.float32)
            )
        },
    )


def drafts_and_vectors(names: list[str], seed: int = 99) -> tuple[list[ItemDraft], np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(len(names), CONTENT_DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    released = date(2026, 1, 2)
    drafts = [ItemDraft(n, f"Title {n}", genres=("noir",), released=released) for n in names]
    return drafts, vectors


async def upserts(tmp_path: Path) -> ItemUpserts:
    return ItemUpserts(await LiveDatabase.open(tmp_path / "live"), "test-model", 1, 8)


async def test_new_items_reach_the_new_view_and_never_the_old_one(tmp_path) -> None:
    old = await version(tmp_path / "v1", 50)
    items = await upserts(tmp_path)
    drafts, vectors = drafts_and_vectors(["n1", "n2"])
    stored = await items.record(drafts, vectors)
    new, inserted, updated = await items.apply(old, stored)
    assert inserted == ["n1", "n2"] and updated == []
    assert len(new.items) == 52 and len(old.items) == 50
    assert new.items.index_of("n2") == 51 and not new.items.in_cf[51]
    assert new.items.genres[51] == ["noir"]
    # an item added after the build has no item-item relations: the tables skip it
    assert not len(new.relations["item_knn"].affinity(np.array([51]), np.array([1.0])).items)

    found, _ = await new.content_index.nearest(vectors[1], 3)
    assert found[0] == 51
    stale, _ = await old.content_index.nearest(vectors[1], 60)
    assert stale.max() < 50, "a request on the old view never sees rows it cannot resolve"

    drafts[0] = ItemDraft("n1", "Renamed", genres=("drama",))
    again, inserted, updated = await items.apply(new, await items.record(drafts, vectors))
    assert inserted == [] and updated == ["n1"]
    assert again.items.titles[50] == "Renamed" and again.items.genres[50] == ["drama"]
    assert (await items.stored()).num_rows == 2  # type: ignore[union-attr]


async def test_a_replica_follows_the_items_another_one_wrote(tmp_path) -> None:
    """Two replicas on one version: B takes in A's inserts and edits from the table."""
    on_a = await version(tmp_path / "v1", 30)
    table = await open_items_table(on_a.path)
    on_b = await on_a.with_items(ItemCatalog.from_arrow(await table.to_arrow()))
    a, b = await upserts(tmp_path), await upserts(tmp_path)
    drafts, vectors = drafts_and_vectors(["n1", "n2"])
    on_a, inserted, _ = await a.apply(on_a, await a.record(drafts, vectors))
    followed = await b.follow(on_b, inserted)
    assert list(followed.items.ids[30:]) == ["n1", "n2"]
    found, _ = await followed.content_index.nearest(vectors[0], 1)
    assert found[0] == followed.items.index_of("n1")

    drafts[1] = ItemDraft("n2", "Renamed", genres=("drama",))
    on_a, _, updated = await a.apply(on_a, await a.record(drafts, vectors))
    assert updated == ["n2"]
    again = await b.follow(followed, updated)
    assert again.items.titles[31] == "Renamed" and again.items.genres[31] == ["drama"]
    assert await b.follow(again, []) is again, "nothing new: the same runtime"


async def test_rows_written_but_never_served_are_picked_up(tmp_path) -> None:
    runtime = await version(tmp_path / "v1", 20)
    table = await open_items_table(runtime.path)
    await table.add(item_rows([20], seed=5, ids=["orphan"]))  # as if the server died here
    items = await upserts(tmp_path)
    drafts, vectors = drafts_and_vectors(["n1"])
    new, inserted, _ = await items.apply(runtime, await items.record(drafts, vectors))
    assert inserted == ["n1"]
    assert list(new.items.ids[20:]) == ["orphan", "n1"]


async def test_appended_rows_are_indexed_in_the_background(tmp_path) -> None:
    runtime = await version(tmp_path / "v1", 600, indexed=True)
    items = await upserts(tmp_path)
    drafts, vectors = drafts_and_vectors([f"n{k}" for k in range(12)])
    new, _, _ = await items.apply(runtime, await items.record(drafts, vectors))
    assert not await items.refresh_index(new.path, unindexed_at_least=50)
    assert await items.refresh_index(new.path, unindexed_at_least=10)
    table = await open_items_table(new.path)
    assert all(i.num_unindexed_rows == 0 for i in await table.list_indices())
    fresh = await new.with_items(new.items)
    found, _ = await fresh.content_index.nearest(vectors[3], 5)
    assert new.items.index_of("n3") in found.tolist()


def test_item_drafts_are_checked_and_deduplicated() -> None:
    kept = check_drafts([ItemDraft("a", "One"), ItemDraft("a", "Two"), ItemDraft("b", "B")], 10)
    assert [(d.item_id, d.title) for d in kept] == [("a", "Two"), ("b", "B")]
    for bad in (
        ItemDraft("a", ""),
        ItemDraft("a", "T", description="\x07bell"),
        ItemDraft("a", "T", released=date(1700, 1, 1)),
        ItemDraft("a", "T", genres=("x" * 65,)),
    ):
        with pytest.raises(BadRequest):
            check_drafts([bad], 10)
    assert check_drafts([ItemDraft("a", "T", description="two\nlines")], 10)


def test_live_rows_keep_the_vectors() -> None:
    drafts, vectors = drafts_and_vectors(["x", "y"])
    rows = live_rows(drafts, vectors, "model")
    assert rows.num_rows == 2 and rows.schema.field("content_vector").type.list_size == CONTENT_DIM
    stored = np.asarray(rows["content_vector"].to_pylist(), dtype=np.float32)
    assert np.allclose(stored, vectors)
    assert rows["released"].type == pa.date32()


async def test_cf_factors_are_read_through_the_norm_ordered_search_before_and_after_upserts(
    tmp_path,
) -> None:
    """With an in-memory CF search, the catalog keeps no CF copy of its own: its rows are the
    search's norm-ordered copy read by item, also once items are upserted (the new rows come
    from the table: an item added while serving has no factors)."""
    import dataclasses

    from app.candidates.memory_search import NormOrderedSearch
    from app.mapped_rows import ReorderedRows
    from app.runtime import _cf_from_search

    built = await version(tmp_path / "v1", 50)
    in_item_order = np.asarray(built.items.cf)
    memory = NormOrderedSearch(built.items.cf)
    old = dataclasses.replace(
        built,
        items=_cf_from_search(built.items, memory),
        cf_index=dataclasses.replace(built.cf_index, search={"memory": 1}, memory=memory),
    )
    assert isinstance(old.items.cf, ReorderedRows) and old.items.cf.base is memory.vectors
    np.testing.assert_array_equal(old.items.cf[:], in_item_order)
    np.testing.assert_array_equal(np.take(old.items.cf, [7, 3], axis=0), in_item_order[[7, 3]])

    items = await upserts(tmp_path)
    drafts, vectors = drafts_and_vectors(["n1", "n2"])
    new, inserted, _ = await items.apply(old, await items.record(drafts, vectors))
    assert inserted == ["n1", "n2"]
    table = await open_items_table(new.path)
    fresh = ItemCatalog.from_arrow(await table.to_arrow())
    assert isinstance(new.items.cf, ReorderedRows)
    assert new.items.cf.base is new.cf_index.memory.vectors  # type: ignore[union-attr]
    np.testing.assert_array_equal(new.items.cf[:], np.asarray(fresh.cf))
    found, _ = await new.cf_index.nearest(in_item_order[5], 3)
    assert found.tolist() == np.argsort(-(np.asarray(fresh.cf) @ in_item_order[5]))[:3].tolist()
    np.testing.assert_array_equal(old.items.cf[:], in_item_order)  # the old view is untouched
