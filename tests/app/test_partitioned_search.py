import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.candidates.partitioned_search import PartitionedSearch, Partitions, nearest_centroid


def unit(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=-1, keepdims=True)).astype(np.float32)


def three_clusters() -> tuple[np.ndarray, Partitions]:
    """Items 0-99 point along x, 100-199 along y, 200-299 along z (with a little noise)."""
    rng = np.random.default_rng(1)
    axes = np.eye(3, dtype=np.float32)
    vectors = unit(np.repeat(axes, 100, axis=0) + 0.05 * rng.normal(size=(300, 3)))
    partitions = Partitions(axes, np.eye(3, dtype=np.float32), np.repeat([0, 1, 2], 100))
    return vectors, partitions


def test_one_probe_searches_only_the_query_s_partition() -> None:
    vectors, partitions = three_clusters()
    search = PartitionedSearch(vectors, partitions, nprobes=1, refine=2)
    query = unit(np.array([0.1, 1.0, 0.0]))
    items, scores, scanned = search.nearest(query, 10)
    assert scanned == 100 and set(items.tolist()) <= set(range(100, 200))
    expected = 100 + np.argsort(-(vectors[100:200] @ query), kind="stable")[:10]
    assert items.tolist() == expected.tolist()
    np.testing.assert_allclose(scores, vectors[expected] @ query, rtol=1e-5)


def test_items_added_after_the_build_are_put_in_their_nearest_partition() -> None:
    vectors, partitions = three_clusters()
    grown = np.vstack([vectors, unit(np.array([[0.0, 0.0, 1.0]]))])  # item 300, along z
    search = PartitionedSearch(grown, partitions, nprobes=1, refine=2)
    items, _, _ = search.nearest(unit(np.array([0.0, 0.0, 1.0])), 1)
    assert items.tolist() == [300]


@settings(max_examples=40)
@given(st.integers(1, 400), st.integers(1, 12), st.integers(1, 50), st.integers(0, 2**32 - 1))
def test_probing_every_partition_with_a_wide_refine_is_exact_search(
    n: int, p: int, k: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    vectors = unit(rng.normal(size=(n, 8)))
    projection = np.linalg.qr(rng.normal(size=(8, 4)))[0].astype(np.float32)
    partitions = Partitions(unit(rng.normal(size=(p, 8))), projection, np.zeros(0, np.int32))
    partitions = Partitions(partitions.centroids, projection, partitions.assign(vectors))
    blocked = set(rng.choice(n, size=n // 3, replace=False).tolist())

    def allows(idx: np.ndarray) -> np.ndarray:
        return np.array([i not in blocked for i in idx.tolist()], dtype=bool)

    query = unit(rng.normal(size=8))
    search = PartitionedSearch(vectors, partitions, nprobes=p, refine=n)
    items, scores, scanned = search.nearest(query, k, allows)
    allowed = np.array([i for i in range(n) if i not in blocked], dtype=np.int64)
    assert scanned == n and not set(items.tolist()) & blocked
    assert len(items) == min(k, len(allowed)) == len(set(items.tolist()))
    np.testing.assert_allclose(scores, vectors[items] @ query, rtol=1e-5, atol=1e-6)
    exact = np.sort(vectors[allowed] @ query)[::-1][:k]
    np.testing.assert_allclose(scores, exact, rtol=1e-4, atol=1e-5)  # ties may swap items


def test_partitions_round_trip_and_a_damaged_file_is_named(tmp_path) -> None:
    _, partitions = three_clusters()
    partitions.save(tmp_path, "content_vector")
    loaded = Partitions.load(tmp_path, "content_vector")
    np.testing.assert_array_equal(loaded.partition_of, partitions.partition_of)
    np.testing.assert_array_equal(loaded.centroids, partitions.centroids)
    bad = Partitions(partitions.centroids, partitions.projection, np.array([0, 7], np.int32))
    bad.save(tmp_path, "cf_vector")
    with pytest.raises(ValueError, match=r"partition numbers outside 0\.\.2"):
        Partitions.load(tmp_path, "cf_vector")


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 600),
    st.integers(1, 12),
    st.integers(1, 60),
    st.integers(1, 3),
    st.integers(0, 2**32 - 1),
)
def test_refines_the_best_rough_scores_of_the_probed_partitions(
    n: int, p: int, k: int, refine: int, seed: int
) -> None:
    """What a full sort finds: of the probed partitions' rows, the refine x k best projected
    scores (every row tied with the last) re-scored exactly, and of those the k best, best
    first, equal scores by item_index."""
    rng = np.random.default_rng(seed)
    # small integers and a projection onto three coordinates: every score is exact (no rounding
    # to differ between this test and the search) and many tie
    vectors = rng.integers(-3, 4, size=(n, 8)).astype(np.float32)
    projection = np.eye(8, 3, dtype=np.float32)
    centroids = unit(rng.normal(size=(p, 8)))
    partitions = Partitions(centroids, projection, nearest_centroid(vectors, centroids))
    nprobes = int(rng.integers(1, p + 1))
    query = rng.integers(-3, 4, size=8).astype(np.float32)
    items, scores, scanned = PartitionedSearch(vectors, partitions, nprobes, refine).nearest(
        query, k
    )
    probed = np.argsort(-(centroids @ query), kind="stable")[:nprobes]
    rows = np.flatnonzero(np.isin(partitions.partition_of, probed))
    assert scanned == len(rows)
    rough = (vectors[rows] @ projection) @ (query @ projection)
    if len(rows) > refine * k:
        rows = rows[rough >= np.sort(rough)[::-1][refine * k - 1]]
    exact = vectors[rows] @ query
    np.testing.assert_array_equal(scores, np.sort(exact)[::-1][:k])
    assert set(items.tolist()) <= set(rows.tolist()) and len(set(items.tolist())) == len(items)
    np.testing.assert_array_equal(scores, vectors[items] @ query)
    assert all(  # best first, equal scores by item_index
        a > b or (a == b and i < j)
        for a, b, i, j in zip(scores[:-1], scores[1:], items[:-1], items[1:], strict=True)
    )


def test_best_of_given_rows_is_exact_when_the_projection_keeps_everything() -> None:
    vectors, partitions = three_clusters()
    search = PartitionedSearch(vectors, partitions, nprobes=1, refine=2)
    rows = np.arange(50, 250, 3)  # items of every partition, not in item order's blocks
    query = unit(np.array([0.2, 1.0, 0.1]))
    found, scores = search.best_of(rows, query, 7)
    expected = rows[np.argsort(-(vectors[rows] @ query), kind="stable")[:7]]
    assert found.tolist() == expected.tolist()
    np.testing.assert_allclose(scores, vectors[expected] @ query, rtol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 500),
    st.integers(1, 40),
    st.integers(1, 3),
    st.integers(0, 2**32 - 1),
)
def test_best_of_refines_the_best_projected_scores_of_the_given_rows(
    n: int, k: int, refine: int, seed: int
) -> None:
    """Of the given rows: the refine x k best projected scores re-scored exactly, the k best of
    those, best first (continuous random vectors: no ties)."""
    rng = np.random.default_rng(seed)
    vectors = unit(rng.normal(size=(n, 8)))
    projection = np.linalg.qr(rng.normal(size=(8, 3)))[0].astype(np.float32)
    centroids = unit(rng.normal(size=(4, 8)))
    partitions = Partitions(centroids, projection, nearest_centroid(vectors, centroids))
    search = PartitionedSearch(vectors, partitions, nprobes=2, refine=refine)
    rows = np.sort(rng.choice(n, size=int(rng.integers(0, n + 1)), replace=False))
    query = unit(rng.normal(size=8))
    found, scores = search.best_of(rows, query, k)
    rough = (vectors[rows] @ projection) @ (query @ projection)
    kept = rows[np.argsort(-rough)[: refine * k]]
    expected = kept[np.argsort(-(vectors[kept] @ query))[:k]]
    assert found.tolist() == expected.tolist()
    np.testing.assert_allclose(scores, vectors[expected] @ query, rtol=1e-5, atol=1e-6)


def test_a_search_over_upserted_rows_copies_the_unchanged_projections_of_the_one_it_replaces(
    tmp_path,
) -> None:
    """Items upserted while serving: the new search projects only the rows replaced or appended
    (held beside the mapped file) and copies the others from the search it replaces; it is the
    search made from scratch."""
    from app.mapped_rows import MappedRows

    rng = np.random.default_rng(7)
    np.save(tmp_path / "v.npy", unit(rng.normal(size=(200, 8))))
    base = np.load(tmp_path / "v.npy", mmap_mode="r")
    projection = np.linalg.qr(rng.normal(size=(8, 3)))[0].astype(np.float32)
    centroids = unit(rng.normal(size=(5, 8)))
    partitions = Partitions(centroids, projection, nearest_centroid(base, centroids))
    first = MappedRows(base, np.array([3]), unit(rng.normal(size=(1, 8))))
    before = PartitionedSearch(first, partitions, nprobes=2, refine=2)
    marker = 12345.0  # copied rows keep what the old search held, computed ones do not
    before.projected[before.position[[10, 3]]] = marker
    grown = first.with_rows(np.array([7, 200, 201]), unit(rng.normal(size=(3, 8))))
    after = PartitionedSearch(grown, partitions, nprobes=2, refine=2, previous=before)
    assert (after.projected[after.position[10]] == marker).all()  # unchanged: copied
    assert not (after.projected[after.position[[3, 7, 200, 201]]] == marker).any()
    after.projected[after.position[10]] = before.projected[before.position[10]] = 0.0
    scratch = PartitionedSearch(grown, partitions, nprobes=2, refine=2)
    scratch.projected[scratch.position[10]] = 0.0
    np.testing.assert_array_equal(after.order, scratch.order)
    np.testing.assert_array_equal(after.offsets, scratch.offsets)
    np.testing.assert_allclose(after.projected, scratch.projected, rtol=1e-5, atol=1e-6)
    query = unit(rng.normal(size=8))
    assert after.nearest(query, 20)[0].tolist() == scratch.nearest(query, 20)[0].tolist()
    # another projection (a rebuilt index): nothing is copied
    other = Partitions(centroids, projection.copy(), partitions.partition_of)
    again = PartitionedSearch(grown, other, nprobes=2, refine=2, previous=before)
    assert not (again.projected == marker).any()
