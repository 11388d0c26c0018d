"""Batch user profiles: a user's state by id, cold-start for ids the build never saw."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.errors import CatalogError
from app.users import UserProfiles


def profiles(ids: list[str]) -> UserProfiles:
    n = len(ids)
    rows = np.arange(n)
    return UserProfiles(
        index=pd.Index(ids),
        n_events=rows * 10,
        active_days=rows + 1,
        genres=[{"Drama": float(i)} for i in rows],
        recent=[np.array([i, -1, i + 1]) for i in rows],
        dismissed=[np.array([-1]) for _ in rows],
        consumed=[np.array([i, i + 1]) for i in rows],
        history=[np.array([i + 1]) for i in rows],
        history_weights=[np.array([1.0], dtype=np.float32) for _ in rows],
        cf=np.vstack([np.zeros(2), np.ones((n - 1, 2))]).astype(np.float32),
        content=np.ones((n, 3), dtype=np.float32),
    )


def test_each_known_id_gets_its_own_row_and_unknown_ids_a_cold_state() -> None:
    ids = ["u0", "7", "nan", "u 3", "ü"]
    users = profiles(ids)
    for row, user_id in enumerate(ids):
        state = users.state(user_id)
        assert state.known and state.user_id == user_id
        assert state.n_events == 10 * row and state.active_days == row + 1
        assert state.recent_items == [row, row + 1] and state.consumed == {row, row + 1}
        assert state.history.tolist() == [row + 1]
        assert (state.cf_vector is None) == (row == 0)  # an all-zero CF vector is no vector
    for unknown in ("u1", "", "7 ", "NaN", "u0\x00"):
        state = users.state(unknown)
        assert not state.known and state.cf_vector is None and not state.consumed


def test_an_id_held_twice_is_a_catalog_error_not_a_wrong_row() -> None:
    with pytest.raises(CatalogError, match="more than once"):
        profiles(["a", "b", "a"]).state("a")
