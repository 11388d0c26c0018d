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
