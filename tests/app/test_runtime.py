"""A version's content vectors served from its mapped file, or decoded from an older version's
items table: the same recommendations either way."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from app.domain import RecommendationRequest
from app.engine import Engine
from app.errors import CatalogError
from app.item_relations import NeighbourRelations
from app.items import ItemCatalog
from app.mapped_rows import MappedRows
from app.pipeline import SOURCES
from app.quantized_rows import QuantizedRows
from app.realtime.item_upserts import ItemUpserts
from app.realtime.live_store import LiveDatabase
from app.realtime.records import ItemDraft
from app.runtime import Runtime
from app.settings import Settings
from app.store import CONTENT_FILE, CatalogRoot, write_manifest
from tests.page_cache import resident_bytes

# Generous deadlines: the two engines must not differ by a stage that ran out of time.
RELAXED = {
    "budget_ms": 20_000,
    "user_state_ms": 10_000,
    "candidates_ms": 10_000,
    "ranking_ms": 10_000,
    "reranking_ms": 10_000,
    "candidates": {source.name: {"deadline_ms": 8_000} for source in SOURCES},
}


def as_built_before_the_file(built_catalog: Path, tmp_path: Path) -> Path:
    """A copy of the catalog whose version has no content file, as versions built before it."""
    root = tmp_path / "older.lancedb"
    shutil.copytree(built_catalog, root, ignore=shutil.ignore_patterns("live"))
    version = CatalogRoot(root).open()
    (version.path / CONTENT_FILE).unlink()
    write_manifest(version.path, version.manifest.model_copy(update={"content_file": None}))
    return root


async def upsert_changed_and_new(
    root: Path, runtime: Runtime, position: int, seed: int
) -> tuple[Runtime, list[str], list[str], np.ndarray]:
    """Upsert a new vector for the item at `position` and a new item "brand-new": the runtime
    serving them, the ids inserted and updated, and the two unit vectors given."""
    vectors = np.random.default_rng(seed).normal(size=(2, runtime.manifest.content_dim))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    changed = str(runtime.items.ids[position])
    drafts = [ItemDraft(changed, "Changed"), ItemDraft("brand-new", "Brand New")]
    upserts = ItemUpserts(await LiveDatabase.open(CatalogRoot(root).live_dir), "m", 1, 8)
    served, inserted, updated = await upserts.apply(runtime, await upserts.record(drafts, vectors))
    return served, inserted, updated, vectors


def test_a_built_version_serves_its_content_vectors_mapped(built_catalog: Path) -> None:
    runtime = asyncio.run(Runtime.open(built_catalog))
    content = runtime.items.content
    assert runtime.manifest.content_file == CONTENT_FILE
    assert isinstance(content, np.memmap) and not content.flags.writeable
    assert Path(str(content.filename)) == (runtime.path / CONTENT_FILE).resolve()
    assert content.shape == (len(runtime.items), runtime.manifest.content_dim)


def test_a_loaded_version_s_mapped_files_are_mapped_in_before_the_first_request(
    built_catalog: Path,
) -> None:
    """The content vectors and the item neighbours: no first requests faulting them in."""
    runtime = asyncio.run(Runtime.open(built_catalog))
    knn = runtime.relations["item_knn"]
    assert isinstance(knn, NeighbourRelations)
    for matrix in (runtime.items.content, knn.neighbours, knn.weights):
        assert isinstance(matrix, np.memmap)  # mapped, not read
        assert resident_bytes(matrix) >= matrix.nbytes


async def test_the_file_and_the_column_serve_the_same_recommendations(
    built_catalog: Path, tmp_path: Path
) -> None:
    older = as_built_before_the_file(built_catalog, tmp_path)
    engines = [
        await Engine.start(Settings(db_path=root, pipeline=RELAXED), live=False)
        for root in (built_catalog, older)
    ]
    try:
        mapped, decoded = (e.current.runtime.items.content for e in engines)
        assert isinstance(mapped, np.memmap) and not isinstance(decoded, np.memmap)
        np.testing.assert_array_equal(mapped, decoded)
        users = [*engines[0].current.runtime.users.index[:12], "nobody-yet"]
        at = datetime(2030, 1, 1, tzinfo=UTC)
        for user in users:
            got = [
                await e.recommend(RecommendationRequest(str(user), 20, at, request_id="r"))
                for e in engines
            ]
            assert not got[0].degraded and not got[1].degraded
            assert [p.item for p in got[0].picks] == [p.item for p in got[1].picks], user
            np.testing.assert_allclose(
                [p.score for p in got[0].picks], [p.score for p in got[1].picks], rtol=1e-6
            )
    finally:
        for engine in engines:
            await engine.close()


def test_a_version_lacking_its_listed_content_file_is_refused(
    built_catalog: Path, tmp_path: Path
) -> None:
    root = tmp_path / "broken.lancedb"
    shutil.copytree(built_catalog, root, ignore=shutil.ignore_patterns("live"))
    (CatalogRoot(root).open().path / CONTENT_FILE).unlink()
    with pytest.raises(CatalogError, match=CONTENT_FILE.replace(".", r"\.")):
        asyncio.run(Runtime.open(root))


async def test_items_upserted_into_the_table_are_read_beside_the_file(
    built_catalog: Path, tmp_path: Path
) -> None:
    """Upserts change the version's table, never its file: a runtime opened afterwards (a
    restart, another replica) reads the changed and appended rows from the table."""
    root = tmp_path / "upserted.lancedb"
    shutil.copytree(built_catalog, root, ignore=shutil.ignore_patterns("live"))
    runtime = await Runtime.open(root)
    assert runtime.manifest.items_table_version == CatalogRoot(root).open().table("items").version
    file = runtime.path / CONTENT_FILE
    before = file.read_bytes()
    served, inserted, updated, vectors = await upsert_changed_and_new(root, runtime, 5, seed=5)
    assert inserted == ["brand-new"] and updated == [str(runtime.items.ids[5])]
    n = len(runtime.items)

    reopened = await Runtime.open(root)
    content = reopened.items.content
    assert isinstance(content, MappedRows) and len(content) == n + 1
    decoded = ItemCatalog.from_table(CatalogRoot(root).open().table("items")).content
    every = np.arange(n + 1)
    np.testing.assert_array_equal(content[every], decoded)
    np.testing.assert_array_equal(content[[5, n]], vectors)
    np.testing.assert_array_equal(served.items.content[every], decoded)
    assert file.read_bytes() == before
    built = np.load(file)
    np.testing.assert_array_equal(runtime.items.content[4:6], built[4:6])  # the old view


async def test_an_int8_catalog_serves_nearly_the_mapped_catalogs_recommendations(
    built_catalog: Path,
) -> None:
    """Above `content_int8_above` items the vectors are int8 codes in memory: the same items
    recommended (their scores within the codes' error), the file no longer read."""
    engines = [
        await Engine.start(
            Settings(db_path=built_catalog, pipeline=RELAXED, content_int8_above=above), live=False
        )
        for above in (10**9, 0)
    ]
    try:
        mapped, coded = (e.current.runtime.items.content for e in engines)
        assert isinstance(mapped, np.memmap) and isinstance(coded, QuantizedRows)
        every = np.arange(len(mapped))
        np.testing.assert_allclose(coded[every], mapped[every], atol=2e-3)
        at = datetime(2030, 1, 1, tzinfo=UTC)
        overlaps = []
        for user in [*engines[0].current.runtime.users.index[:12], "nobody-yet"]:
            got = [
                await e.recommend(RecommendationRequest(str(user), 20, at, request_id="r"))
                for e in engines
            ]
            assert not got[0].degraded and not got[1].degraded
            items = [{p.item for p in answer.picks} for answer in got]
            overlaps.append(len(items[0] & items[1]) / max(len(items[0]), 1))
        assert np.mean(overlaps) >= 0.9, overlaps
    finally:
        for engine in engines:
            await engine.close()


async def test_items_upserted_into_an_int8_catalog_are_served_exactly(
    built_catalog: Path, tmp_path: Path
) -> None:
    root = tmp_path / "coded.lancedb"
    shutil.copytree(built_catalog, root, ignore=shutil.ignore_patterns("live"))
    runtime = await Runtime.open(root, content_int8_above=0)
    served, _, _, vectors = await upsert_changed_and_new(root, runtime, 3, seed=7)
    n = len(runtime.items)
    assert isinstance(served.items.content, MappedRows)
    assert isinstance(served.items.content.base, QuantizedRows)
    np.testing.assert_array_equal(served.items.content[[3, n]], vectors)
    reopened = await Runtime.open(root, content_int8_above=0)
    assert isinstance(reopened.items.content, QuantizedRows) and len(reopened.items) == n + 1
    np.testing.assert_allclose(reopened.items.content[[3, n]], vectors, atol=2e-3)
