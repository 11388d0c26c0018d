"""stable_order is numpy's stable argsort, for any integer keys; runs finds equal runs;
shares_below is a sort and a binary search per row, in one sort."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import app.sorting
from app.sorting import kth_largest, runs, shares_below, shares_by_search, stable_order


def test_stable_order_known_answer():
    # equal keys keep the order given: the two 5s, then the three 2s, in position order
    keys = np.array([5, 2, 9, 2, 5, 0, 2])
    assert stable_order(keys).tolist() == [5, 1, 3, 6, 0, 4, 2]
    assert stable_order(np.zeros(0, dtype=np.int64)).tolist() == []


@given(st.lists(st.integers(0, 40), max_size=300))
def test_stable_order_is_a_stable_argsort_of_small_keys(keys):
    values = np.array(keys, dtype=np.int64)
    assert stable_order(values).tolist() == np.argsort(values, kind="stable").tolist()


@given(st.lists(st.integers(-(2**40), 2**40), max_size=60))
def test_keys_that_cannot_be_packed_are_still_ordered_stably(keys):
    values = np.array(keys, dtype=np.int64)
    assert stable_order(values).tolist() == np.argsort(values, kind="stable").tolist()


def test_stable_order_at_the_largest_packable_key():
    keys = np.array([2**31 - 1, 0, 2**31 - 1, 2**31, 1], dtype=np.int64)
    assert stable_order(keys).tolist() == [1, 4, 0, 2, 3]
    assert stable_order(keys.astype(np.int32)[:3]).tolist() == [1, 0, 2]


def test_runs_known_answer():
    starts, run = runs(np.array([1, 1, 3, 4, 4, 4]))
    assert starts.tolist() == [0, 2, 3] and run.tolist() == [0, 0, 1, 2, 2, 2]
    starts, run = runs(np.array([7]))
    assert starts.tolist() == [0] and run.tolist() == [0]


def test_shares_below_known_answer():
    nan, inf = np.nan, np.inf
    values = np.array(
        [
            [3.0, 1.0, nan, 1.0, 7.0],  # ties share the lowest share; NaN stays NaN
            [-0.0, 0.0, -inf, inf, nan],  # -0.0 is 0.0; infinities are values
            [nan, nan, nan, nan, nan],
            [5.0, nan, nan, nan, nan],  # one known value: 0 over max(1, 0)
        ],
        dtype=np.float32,
    )
    shares = shares_below(values)
    np.testing.assert_array_equal(shares[0], np.float32([2 / 3, 0.0, nan, 0.0, 1.0]))
    np.testing.assert_array_equal(shares[1], np.float32([1 / 3, 1 / 3, 0.0, 1.0, nan]))
    assert np.isnan(shares[2]).all()
    np.testing.assert_array_equal(shares[3], [0.0, nan, nan, nan, nan])
    assert shares.dtype == np.float32
    assert shares_below(np.zeros((3, 0), dtype=np.float32)).shape == (3, 0)


_FLOATS = st.one_of(
    st.floats(width=32, allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, np.nan]),  # ties and signed zeros, often
)


@given(
    st.integers(1, 4).flatmap(
        lambda width: st.lists(
            st.lists(_FLOATS, min_size=width, max_size=width), min_size=1, max_size=5
        )
    )
)
def test_shares_below_is_a_sort_and_a_search_per_row(rows):
    values = np.array(rows, dtype=np.float32)
    expected = np.stack([shares_by_search(row) for row in values])
    np.testing.assert_array_equal(shares_below(values), expected)


def test_shares_below_on_a_request_sized_block_with_negative_nans():
    rng = np.random.default_rng(7)
    values = rng.standard_normal((15, 1000)).astype(np.float32)
    values[rng.random(values.shape) < 0.2] = np.nan
    values[:, ::7] = np.round(values[:, ::7])  # ties
    values[0, :10] = -np.float32(np.nan)  # a NaN with its sign bit set still sorts last
    expected = np.stack([shares_by_search(row) for row in values])
    np.testing.assert_array_equal(shares_below(values), expected)


def test_rows_too_wide_for_exact_float32_ranks_are_ranked_one_at_a_time(monkeypatch):
    rng = np.random.default_rng(3)
    values = rng.standard_normal((3, 40)).astype(np.float32)
    values[0, :5] = np.nan
    values[1, ::2] = 1.0
    packed = shares_below(values)
    monkeypatch.setattr(app.sorting, "EXACT_IN_FLOAT32", 40)
    np.testing.assert_array_equal(shares_below(values), packed)


def test_kth_largest_known_answer():
    values = np.array([3.0, 9.0, 1.0, 9.0, 4.0], dtype=np.float32)
    assert [kth_largest(values, k) for k in range(1, 6)] == [9.0, 9.0, 4.0, 3.0, 1.0]
    with pytest.raises(ValueError, match="k must be between 1 and 5"):
        kth_largest(values, 6)


SHAPES = ("normal", "ties", "ascending", "descending", "spikes on the sample", "dips on the sample")


@given(
    st.integers(1, 40_000),
    st.sampled_from(SHAPES),
    st.integers(1, 3_000),
    st.integers(0, 2**32 - 1),
)
def test_kth_largest_is_a_partition(n, shape, k, seed):
    """Whatever the sample sees (even values planted on exactly the sampled positions), the
    answer is the partition's."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(n).astype(np.float32)
    step = max(1, n // app.sorting.SAMPLE)
    if shape == "ties":
        values = np.round(values * 2).astype(np.float32)
    elif shape == "ascending":
        values.sort()
    elif shape == "descending":
        values = -np.sort(values)
    elif shape == "spikes on the sample":  # the sample's bar lands above the real cut
        values[::step] += 100
    elif shape == "dips on the sample":  # ... or far below it
        values[::step] -= 100
    k = min(k, n)
    assert kth_largest(values, k) == np.partition(values, n - k)[n - k]
