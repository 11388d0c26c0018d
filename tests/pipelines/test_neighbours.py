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
