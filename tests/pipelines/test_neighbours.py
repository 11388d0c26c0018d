import numpy as np
import pytest
import scipy.sparse as sp

from pipelines import neighbours
from pipelines.neighbours import item_neighbours


def test_large_catalogs_get_neighbours_among_their_widest_audiences(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Above max_items, the widest-audience items are related among themselves, numbered as in
    the whole catalog; the others have none."""
    monkeypatch.setattr(neighbours, "WIDEST_ITEMS", 4)
    # items 1, 3, 5, 7 are seen by many users (1 with 3, 5 with 7); 0, 2, 4, 6 by one each
    rows, cols = [], []
    for user in range(12):
        pair = (1, 3) if user < 6 else (5, 7)
        rows += [user, user]
        cols += list(pair)
    rows += [0, 1, 2, 3]
    cols += [0, 2, 4, 6]
    train = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(12, 8), dtype=np.float32)
    found, scores = item_neighbours(train, k=2, shrink=0.0, max_items=5)
    assert found.shape == (8, 2) and found.dtype == np.int32
    assert found[1, 0] == 3 and found[3, 0] == 1 and found[5, 0] == 7 and found[7, 0] == 5
    assert (found[[0, 2, 4, 6]] == -1).all() and not scores[[0, 2, 4, 6]].any()
    assert set(found[found >= 0].tolist()) <= {1, 3, 5, 7}
    # within max_items, every item is covered, as before
    small, _ = item_neighbours(train, k=2, shrink=0.0, max_items=8)
    assert small[0, 0] in (1, 3) and small[1, 0] == 3


@pytest.mark.parametrize("max_items", [5, 8])
def test_neighbours_fill_the_arrays_given_as_they_would_new_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path, max_items: int
) -> None:
    """The build passes memory-mapped files (`out`): dirty ones come back exactly as new arrays
    would, for the catalog-wide and the widest-audience paths alike."""
    monkeypatch.setattr(neighbours, "WIDEST_ITEMS", 4)
    rng = np.random.default_rng(5)
    train = sp.csr_matrix((rng.random((12, 8)) < 0.4).astype(np.float32))
    want, want_scores = item_neighbours(train, k=3, shrink=1.0, max_items=max_items)
    found = np.lib.format.open_memmap(tmp_path / "n.npy", "w+", np.int32, (8, 3))
    scores = np.lib.format.open_memmap(tmp_path / "s.npy", "w+", np.float32, (8, 3))
    found[:] = 7  # stale values must not survive
    scores[:] = 9.0
    got, got_scores = item_neighbours(train, 3, 1.0, max_items=max_items, out=(found, scores))
    assert got is found and got_scores is scores
    np.testing.assert_array_equal(found, want)
    np.testing.assert_array_equal(scores, want_scores)
    assert (want >= 0).any() and (want == -1).any()
