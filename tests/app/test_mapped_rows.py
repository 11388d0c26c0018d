"""MappedRows: a mapped matrix with rows replaced and appended in memory, read only by rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.candidates.memory_search import NormOrderedSearch
from app.candidates.partitioned_search import PartitionedSearch
from app.mapped_rows import MappedRows, advise_random, populate
from pipelines.partitions import fit_partitions
from tests.page_cache import resident_bytes


def mapped(tmp_path: Path, rows: int = 50, dim: int = 8, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    np.save(tmp_path / "content_vector.npy", vectors)
    return np.load(tmp_path / "content_vector.npy", mmap_mode="r")


def test_rows_read_through_every_kind_of_index(tmp_path: Path) -> None:
    base = mapped(tmp_path)
    rng = np.random.default_rng(1)
    changed = np.array([3, 17, 49])
    appended = np.array([50, 51])
    new = rng.normal(size=(5, base.shape[1])).astype(np.float32)
    rows = MappedRows.of(base).with_rows(np.concatenate([changed, appended]), new)
    expected = np.vstack([base, new[3:]])
    expected[changed] = new[:3]
    assert len(rows) == 52 and rows.shape == (52, 8) and rows.ndim == 2
    assert rows.dtype == np.float32
    everything = np.arange(52)
    np.testing.assert_array_equal(rows[everything], expected)
    np.testing.assert_array_equal(rows[list(everything[::-1])], expected[::-1])
    np.testing.assert_array_equal(rows[10:20], expected[10:20])
    np.testing.assert_array_equal(rows[45:], expected[45:])
    np.testing.assert_array_equal(rows[17], expected[17])
    np.testing.assert_array_equal(rows[np.int64(-1)], expected[-1])
    np.testing.assert_array_equal(rows[everything % 2 == 0], expected[::2])
    np.testing.assert_array_equal(rows[[3, 4], 2:5], expected[[3, 4], 2:5])
    grid = np.array([[0, 3], [51, 49]])
    np.testing.assert_array_equal(np.take(rows, grid, axis=0), expected[grid])
    with pytest.raises(IndexError):
        rows[52]
    with pytest.raises(TypeError, match="whole array"):
        np.asarray(rows)


def test_a_second_upsert_leaves_the_first_and_the_file_alone(tmp_path: Path) -> None:
    base = mapped(tmp_path)
    before = (tmp_path / "content_vector.npy").read_bytes()
    first = MappedRows.of(base).with_rows(np.array([5, 50]), np.ones((2, 8), np.float32))
    second = first.with_rows(np.array([5, 51]), np.full((2, 8), 2.0, np.float32))
    assert len(first) == 51 and len(second) == 52
    np.testing.assert_array_equal(first[5], np.ones(8))
    np.testing.assert_array_equal(second[5], np.full(8, 2.0))
    np.testing.assert_array_equal(second[50], np.ones(8))
    np.testing.assert_array_equal(second[4], base[4])
    assert (tmp_path / "content_vector.npy").read_bytes() == before
    with pytest.raises(ValueError, match="numbering"):
        first.with_rows(np.array([53]), np.ones((1, 8), np.float32))


def test_in_memory_searches_take_it_without_a_whole_array(tmp_path: Path) -> None:
    """The searches a runtime rebuilds after an upsert read it by rows (its __array__ refuses)
    and find what they find over the same matrix in memory."""
    base = mapped(tmp_path, rows=400, dim=16)
    new = np.random.default_rng(2).normal(size=(3, 16)).astype(np.float32)
    rows = MappedRows.of(base).with_rows(np.array([7, 400, 401]), new)
    plain = np.vstack([base, new[1:]])
    plain[7] = new[0]
    partitions = fit_partitions(np.asarray(base), np.random.default_rng(0), partitions=8)
    query = plain[7]
    for search_over in (
        lambda v: PartitionedSearch(v, partitions, nprobes=3, refine=4),
        lambda v: NormOrderedSearch(v),
    ):
        found, scores, _ = search_over(rows).nearest(query, 10)
        want, want_scores, _ = search_over(plain).nearest(query, 10)
        np.testing.assert_array_equal(found, want)
        np.testing.assert_allclose(scores, want_scores, rtol=1e-6)


def test_reordered_rows_read_as_the_matrix_in_item_order() -> None:
    from app.mapped_rows import ReorderedRows

    matrix = np.random.default_rng(1).normal(size=(40, 4)).astype(np.float32)
    order = np.random.default_rng(2).permutation(40)
    position = np.empty(40, dtype=np.int64)
    position[order] = np.arange(40)
    rows = ReorderedRows(matrix[order], position)
    assert len(rows) == 40 and rows.shape == (40, 4) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows[:], matrix)
    np.testing.assert_array_equal(rows[5], matrix[5])
    np.testing.assert_array_equal(rows[-1], matrix[-1])
    np.testing.assert_array_equal(rows[[3, 3, 0]], matrix[[3, 3, 0]])
    np.testing.assert_array_equal(np.take(rows, np.array([[1, 2]]), axis=0), matrix[[[1, 2]]])
    np.testing.assert_array_equal(rows[matrix[:, 0] > 0], matrix[matrix[:, 0] > 0])
    np.testing.assert_array_equal(rows[2:9:3, 1], matrix[2:9:3, 1])
    with pytest.raises(TypeError):
        np.asarray(rows)
    with pytest.raises(IndexError):
        rows[40]


def test_rows_between_reads_a_mapped_file_as_the_map_does(tmp_path) -> None:
    from app.mapped_rows import advise_random, rows_between

    matrix = np.random.default_rng(2).normal(size=(50, 6)).astype(np.float32)
    np.save(tmp_path / "m.npy", matrix)
    mapped = np.load(tmp_path / "m.npy", mmap_mode="r")
    advise_random(mapped)  # a hint only: the rows read the same
    for start, stop in [(0, 50), (7, 19), (45, 80), (50, 60), (3, 3)]:
        np.testing.assert_array_equal(rows_between(mapped, start, stop), matrix[start:stop])
    view = mapped[10:]  # a view keeps its parent's file offset: read through the map instead
    np.testing.assert_array_equal(rows_between(view, 2, 5), matrix[12:15])
    held = MappedRows(mapped, np.array([8, 50, 51]), np.ones((3, 6), dtype=np.float32))
    advise_random(held)
    expected = np.concatenate([matrix, np.zeros((2, 6), np.float32)])
    expected[[8, 50, 51]] = 1.0
    for start, stop in [(0, 52), (5, 9), (49, 52), (9, 20)]:
        np.testing.assert_array_equal(rows_between(held, start, stop), expected[start:stop])


def test_populate_maps_a_small_file_s_pages_in_before_any_read(tmp_path: Path) -> None:
    rows = np.random.default_rng(3).normal(size=(16_384, 256)).astype(np.float32)  # 16 MB
    np.save(tmp_path / "v.npy", rows)
    cold = np.load(tmp_path / "v.npy", mmap_mode="r")
    advise_random(cold)
    assert resident_bytes(cold) < rows.nbytes // 4  # nothing read yet: (almost) nothing in
    assert populate(cold)
    assert resident_bytes(cold) >= rows.nbytes  # every page mapped in, before any read
    every_page = np.arange(0, 16_384, 4)
    np.testing.assert_array_equal(np.take(cold, every_page, axis=0), rows[every_page])
    # too large beside the memory available, or not a mapped file: left alone
    left = np.load(tmp_path / "v.npy", mmap_mode="r")
    assert not populate(left, share=1e-9)
    assert resident_bytes(left) < rows.nbytes // 4
    assert not populate(rows)
