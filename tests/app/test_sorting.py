"""stable_order is numpy's stable argsort, for any integer keys; runs finds equal runs."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from app.sorting import runs, stable_order


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
