"""ItemCatalog.with_rows: a grown or updated catalog equals one read from the whole table."""

from __future__ import annotations

from dataclasses import fields
from datetime import date, datetime

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.items import ItemCatalog
from app.mapped_rows import MappedRows
from app.store import items_schema
from app.text_columns import TextColumn

CONTENT_DIM, CF_DIM = 4, 3
GENRES = ["drama", "comedy", "horror", "noir", "anime"]
SERIES = [None, None, "Saga", "Trilogy", "Cycle"]


def item_rows(
    indexes: list[int], seed: int = 0, title: str = "Item", ids: list[str] | None = None
) -> pa.Table:
    """Rows of a version's items table for these item_index values."""
    rng = np.random.default_rng(seed)
    n = len(indexes)
    content = rng.normal(size=(n, CONTENT_DIM)).astype(np.float32)
    content /= np.linalg.norm(content, axis=1, keepdims=True)
    cf = rng.normal(size=(n, CF_DIM)).astype(np.float32)
    genres = [sorted(set(rng.choice(GENRES, size=rng.integers(0, 3)).tolist())) for _ in indexes]
    series = [SERIES[int(rng.integers(0, len(SERIES)))] for _ in indexes]
    released = [date(2000 + i % 20, 1 + i % 12, 1) if i % 3 else None for i in indexes]

    def fixed(array: np.ndarray, width: int) -> pa.FixedSizeListArray:
        return pa.FixedSizeListArray.from_arrays(pa.array(array.ravel()), width)

    return pa.Table.from_arrays(
        [
            pa.array(ids or [f"i{i}" for i in indexes], pa.string()),
            pa.array(indexes, pa.int32()),
            pa.array([f"{title} {i}" for i in indexes], pa.string()),
            pa.array([f"about {i}" for i in indexes], pa.string()),
            pa.array(genres, pa.list_(pa.string())),
            pa.array(series, pa.string()),
            pa.array([i % 4 + 1 if s else None for i, s in zip(indexes, series, strict=True)]),
            pa.array(released, pa.date32()),
            pa.array([datetime(2010, 1, 1)] * n, pa.timestamp("s")),
            pa.array(rng.integers(0, 100, n), pa.int64()),
            pa.array(rng.integers(0, 50, n), pa.int64()),
            pa.array([None if i % 2 else 3.5 for i in indexes], pa.float32()),
            pa.array(rng.random(n), pa.float32()),
            pa.array(rng.random(n), pa.float32()),
            pa.array(rng.random(n), pa.float32()),
            pa.array([i % 5 != 0 for i in indexes]),
            fixed(content, CONTENT_DIM),
            fixed(cf, CF_DIM),
        ],
        schema=items_schema(CONTENT_DIM, CF_DIM),
    )


def same_catalog(a: ItemCatalog, b: ItemCatalog) -> None:
    """Equal item by item (genre and series codes may be numbered differently)."""
    assert list(a.ids) == list(b.ids)
    assert a.genres == b.genres
    for row in range(len(a)):
        names_a = {a.genre_names[j] for j in np.flatnonzero(a.genre_matrix[row])}
        names_b = {b.genre_names[j] for j in np.flatnonzero(b.genre_matrix[row])}
        assert names_a == names_b == set(a.genres[row])
    series_a = [a.series_names[c] if c >= 0 else None for c in a.series.tolist()]
    series_b = [b.series_names[c] if c >= 0 else None for c in b.series.tolist()]
    assert series_a == series_b
    for f in fields(a):
        value = getattr(a, f.name)
        if f.name in ("genres", "genre_names", "genre_matrix", "series", "series_names", "index"):
            continue
        if isinstance(value, TextColumn) or value.dtype == object:
            assert list(value) == list(getattr(b, f.name)), f.name
        else:
            assert np.array_equal(value, getattr(b, f.name), equal_nan=True), f.name
    assert a.index_of(str(a.ids[-1])) == len(a) - 1


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 30),
    added=st.integers(0, 10),
    changed=st.sets(st.integers(0, 29), max_size=8),
    seed=st.integers(0, 100),
)
def test_appended_and_changed_rows_equal_a_fresh_read(n, added, changed, seed) -> None:
    base = item_rows(list(range(n)), seed)
    changed_rows = sorted(i for i in changed if i < n)
    update = item_rows(changed_rows, seed + 1, title="Changed")
    new = item_rows(list(range(n, n + added)), seed + 2)
    catalog = ItemCatalog.from_arrow(base)
    grown = catalog.with_rows(pa.concat_tables([update, new]))

    kept = base.filter(pa.array([i not in changed_rows for i in range(n)]))
    same_catalog(grown, ItemCatalog.from_arrow(pa.concat_tables([kept, update, new])))
    same_catalog(catalog, ItemCatalog.from_arrow(base))  # the old one is left untouched


def test_a_grown_catalog_s_id_lookup_is_built_before_its_first_request() -> None:
    """pandas builds an index's hash table on its first lookup: 83 ms at 1M items, which would
    fall on the first request after an upsert. (`is_mapping_populated` is pandas' own flag.)"""
    catalog = ItemCatalog.from_arrow(item_rows([0, 1, 2]))
    grown = catalog.with_rows(pa.concat_tables([item_rows([1], title="Changed"), item_rows([3])]))
    for served in (catalog, grown):
        assert served.index._engine.is_mapping_populated
    assert grown.indices_of(["i3", "i1", "nope"]).tolist() == [3, 1, -1]


def test_appended_rows_must_continue_the_numbering() -> None:
    catalog = ItemCatalog.from_arrow(item_rows([0, 1, 2]))
    with pytest.raises(ValueError, match="numbering"):
        catalog.with_rows(item_rows([4]))


@pytest.mark.parametrize(("changed", "added"), [([0, 5, 11], 3), ([], 2), ([4], 0)])
def test_upserts_on_a_mapped_catalog_leave_its_file_alone(tmp_path, changed, added) -> None:
    """A catalog whose content vectors are a mapped file (a built version) holds upserted
    rows beside it: the file's bytes never change, the old catalog still reads the old rows."""
    n = 12
    base = item_rows(list(range(n)))
    file = tmp_path / "content_vector.npy"
    np.save(file, ItemCatalog.from_arrow(base).content)
    before = file.read_bytes()
    catalog = ItemCatalog.from_arrow(
        base.drop_columns(["content_vector"]), np.load(file, mmap_mode="r")
    )
    update = item_rows(changed, 1, title="Changed")
    new = item_rows(list(range(n, n + added)), 2)
    grown = catalog.with_rows(pa.concat_tables([update, new]))

    assert isinstance(grown.content, MappedRows)
    kept = base.filter(pa.array([i not in changed for i in range(n)]))
    fresh = ItemCatalog.from_arrow(pa.concat_tables([kept, update, new]))
    every = np.arange(len(fresh))
    assert grown.content.shape == fresh.content.shape
    np.testing.assert_array_equal(grown.content[every], fresh.content)
    np.testing.assert_array_equal(np.take(grown.content, every, axis=0), fresh.content)
    assert file.read_bytes() == before
    assert isinstance(catalog.content, np.memmap)
    np.testing.assert_array_equal(catalog.content, ItemCatalog.from_arrow(base).content)
