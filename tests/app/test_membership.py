"""app.membership: the same answers as np.isin, whatever the set's size or the indices asked."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from app.membership import MIN_TABLE, Members


def test_members_known_answer():
    members = Members({5, 70_000, 5 + MIN_TABLE})  # 5 and 5 + 2**16 share a slot in the table
    asked = np.array([5, 6, 5 + MIN_TABLE, 70_000, 70_000 + MIN_TABLE, -5, 4_000_000])
    assert members(asked).tolist() == [True, False, True, True, False, False, False]
    assert len(members) == 3


def test_an_empty_set_or_an_empty_ask():
    assert Members(set())(np.array([1, 2])).tolist() == [False, False]
    assert Members({1})(np.zeros(0, dtype=np.int64)).tolist() == []


@given(
    st.sets(st.integers(-(2**40), 2**40), max_size=300),
    st.lists(st.integers(-(2**40), 2**40), max_size=300),
)
def test_members_is_isin(values, asked):
    members = Members(values)
    idx = np.array(asked + list(values)[:50], dtype=np.int64)
    expected = np.isin(idx, np.fromiter(values, dtype=np.int64, count=len(values)))
    np.testing.assert_array_equal(members(idx), expected)


@given(st.integers(0, 2**32 - 1), st.sampled_from([10, 5_000, 400_000]))
def test_a_large_set_grows_its_table(seed, size):
    rng = np.random.default_rng(seed)
    values = rng.choice(10_000_000, size=size, replace=False)
    members = Members(values)
    idx = np.concatenate([rng.integers(0, 10_000_000, 20_000), values[:100]])
    np.testing.assert_array_equal(members(idx), np.isin(idx, values))
