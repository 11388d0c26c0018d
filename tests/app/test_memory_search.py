import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from app.candidates.memory_search import NormOrderedSearch


def test_long_vectors_are_found_first_and_the_scan_stops_early() -> None:
    rng = np.random.default_rng(0)
    tail = 0.01 * rng.normal(size=(5000, 8))  # short vectors: the long tail
    head = 10.0 * rng.normal(size=(20, 8))  # long ones: the popular items
    vectors = np.vstack([tail, head]).astype(np.float32)
    query = head[3].astype(np.float32)
    items, scores, scanned = NormOrderedSearch(vectors).nearest(query, 5)
    brute = np.argsort(-(vectors @ query), kind="stable")[:5]
    assert items.tolist() == brute.tolist()
    assert np.allclose(scores, (vectors @ query)[brute], rtol=1e-5)
    assert scanned < len(vectors)  # the bound stopped it inside the tail


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 300), st.integers(1, 60), st.integers(0, 2**32 - 1))
def test_matches_brute_force_with_a_filter(n: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    vectors = (rng.normal(size=(n, 6)) * rng.lognormal(0, 2, size=(n, 1))).astype(np.float32)
    query = rng.normal(size=6).astype(np.float32)
    blocked = set(rng.choice(n, size=n // 3, replace=False).tolist())

    def allows(idx: np.ndarray) -> np.ndarray:
        return np.array([i not in blocked for i in idx.tolist()], dtype=bool)

    items, scores, _ = NormOrderedSearch(vectors).nearest(query, k, allows)
    allowed = np.array([i for i in range(n) if i not in blocked], dtype=np.int64)
    expected = allowed[np.argsort(-(vectors[allowed] @ query), kind="stable")][:k]
    assert len(items) == len(expected) and not set(items.tolist()) & blocked
    # same scores (ties may swap items of equal score)
    np.testing.assert_allclose(scores, (vectors @ query)[expected], rtol=1e-4, atol=1e-5)


def test_max_rows_keeps_only_the_longest_vectors() -> None:
    vectors = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.5, 0.5]], dtype=np.float32)
    search = NormOrderedSearch(vectors, max_rows=2)
    assert len(search) == 2
    items, _, _ = search.nearest(np.array([1.0, 1.0], dtype=np.float32), 4)
    assert items.tolist() == [1, 2]


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 3000),
    st.integers(1, 400),
    st.integers(0, 2**32 - 1),
    st.booleans(),
    st.sampled_from([None, 50, 1000]),
)
def test_exact_top_k_best_first_ties_by_item_index(
    n: int, k: int, seed: int, filtered: bool, max_rows: int | None
) -> None:
    """The k best allowed rows, best first and equal scores by item_index, whatever the chunks
    scanned: nothing left out scores above the last row kept."""
    rng = np.random.default_rng(seed)
    vectors = (rng.normal(size=(n, 5)) * rng.lognormal(0, 2, size=(n, 1))).astype(np.float32)
    vectors[rng.random(n) < 0.05] = 0.0  # items without events: equal (zero) scores
    if n > 4:
        vectors[1] = vectors[3]  # a duplicated item: an exact tie
    query = rng.normal(size=5).astype(np.float32)
    blocked = rng.random(n) < 0.3 if filtered else np.zeros(n, dtype=bool)

    def allows(idx: np.ndarray) -> np.ndarray:
        return ~blocked[idx]

    search = NormOrderedSearch(vectors, max_rows)
    items, scores, scanned = search.nearest(query, k, allows if filtered else None)
    candidates = search.order[~blocked[search.order]]
    exact = vectors[candidates].astype(np.float64) @ query
    assert len(items) == min(k, len(candidates)) == len(set(items.tolist()))
    assert not blocked[items].any() and set(items.tolist()) <= set(candidates.tolist())
    # float32 rounding, relative to the largest product |v| |q| (a small score can be the
    # difference of large terms)
    slack = 1e-6 * (1.0 + float(np.linalg.norm(vectors, axis=1).max() * np.linalg.norm(query)))
    np.testing.assert_allclose(
        scores, vectors[items].astype(np.float64) @ query, rtol=1e-5, atol=slack
    )
    # best first; equal scores by item_index
    assert all(
        (a > b) or (a == b and i < j)
        for a, b, i, j in zip(scores[:-1], scores[1:], items[:-1], items[1:], strict=True)
    )
    left_out = ~np.isin(candidates, items)
    if len(items) and left_out.any():  # nothing left out beats what was kept
        assert exact[left_out].max() <= scores[-1] + slack
    assert scanned <= len(search)


def test_searches_run_on_one_blas_thread_whatever_the_process_allows() -> None:
    from threadpoolctl import ThreadpoolController, threadpool_limits

    from app.candidates.memory_search import InMemorySearch

    blas = ThreadpoolController().select(user_api="blas")

    class Probe(InMemorySearch):
        def _nearest(self, query, k, allows):  # type: ignore[no-untyped-def]
            threads = [lib.num_threads for lib in blas.lib_controllers]
            return np.array(threads), np.zeros(len(threads), np.float32), 0

    for allowed in (1, 2):
        with threadpool_limits(allowed, "blas"):
            seen, _, _ = Probe().nearest(np.zeros(2), 1)
            assert set(seen.tolist()) <= {1}
            assert {lib.num_threads for lib in blas.lib_controllers} <= {allowed}


def test_zero_rows_are_listed_not_copied_and_beat_negative_scores() -> None:
    """Items without CF factors score 0 for every query: kept out of the sorted copy, they
    still come before negative scores, lowest item_index first, and are read back as zeros."""
    vectors = np.zeros((8, 2), dtype=np.float32)
    vectors[[1, 4, 6]] = [[-1.0, 0.0], [-2.0, 0.0], [0.5, 0.0]]
    search = NormOrderedSearch(vectors)
    assert search.vectors.shape == (3 + 1, 2)  # three rows and one zero row
    items, scores, _ = search.nearest(np.array([1.0, 0.0], dtype=np.float32), 4)
    assert items.tolist() == [6, 0, 2, 3] and scores.tolist() == [0.5, 0.0, 0.0, 0.0]
    blocked = {0, 3}
    items, _, _ = search.nearest(
        np.array([1.0, 0.0], dtype=np.float32),
        7,
        lambda idx: np.array([i not in blocked for i in idx.tolist()]),
    )
    assert items.tolist() == [6, 2, 5, 7, 1, 4]
    by_item = search.by_item()
    assert by_item is not None
    np.testing.assert_array_equal(by_item[np.arange(8)], vectors)
