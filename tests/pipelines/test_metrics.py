from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from pipelines.evaluation.metrics import (
    NO_ITEM,
    average_precision_at_k,
    catalog_coverage,
    intra_list_diversity,
    mean_at_k,
    most_popular,
    ndcg_at_k,
    popularity_share,
    recall_at_k,
    relevant_sets,
    users_per_item,
)

ACCURACY = [ndcg_at_k, recall_at_k, average_precision_at_k]

# --- known answers: accuracy ----------------------------------------------------------------------


def test_ndcg_known_answers():
    assert ndcg_at_k(["a", "b", "c"], {"b"}) == pytest.approx(1 / math.log2(3))
    # hits at ranks 1 and 3; the ideal puts both on top
    assert ndcg_at_k(["a", "b", "c"], {"a", "c"}, k=3) == pytest.approx(
        (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    )
    assert ndcg_at_k(["a", "b", "c"], {"c"}, k=2) == 0.0  # the hit is below the cut
    # more relevant items than slots: the ideal is k hits, so a full list scores 1
    assert ndcg_at_k(["a", "b"], {"a", "b", "c", "d"}, k=2) == pytest.approx(1.0)
    assert ndcg_at_k(np.array([3, 1, 2]), {1}) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k([NO_ITEM, 3], {3}) == pytest.approx(1 / math.log2(3))


def test_recall_is_capped_by_k():
    assert recall_at_k(["a", "b", "c"], {"a", "c", "x", "y"}, k=3) == pytest.approx(2 / 3)
    assert recall_at_k(["a", "b", "c"], {"a", "c", "x", "y"}, k=2) == pytest.approx(1 / 2)
    assert recall_at_k(["a", "b", "c"], {"a"}, k=3) == 1.0
    assert recall_at_k(["a", "b", "c"], {"x"}, k=3) == 0.0


def test_average_precision_known_answers():
    # hits at ranks 1 and 3: (1/1 + 2/3) / min(3, 4)
    assert average_precision_at_k(["a", "b", "c", "d"], {"a", "c", "z"}, k=4) == pytest.approx(
        5 / 9
    )
    # hits at ranks 2 and 3 of a 3-list, five relevant: (1/2 + 2/3) / min(5, 3)
    assert average_precision_at_k(["x", "a", "b"], set("abcde"), k=3) == pytest.approx(7 / 18)
    assert average_precision_at_k(["a", "b"], {"a", "b"}, k=5) == 1.0


def test_a_repeated_item_counts_once():
    assert ndcg_at_k(["b", "b", "c"], {"b"}) == 1.0
    assert recall_at_k(["a", "a", "a"], {"a", "b"}, k=3) == pytest.approx(1 / 2)
    assert average_precision_at_k(["a", "a", "b"], {"a", "b"}, k=3) == pytest.approx(
        (1 + 2 / 3) / 2
    )


@pytest.mark.parametrize("metric", ACCURACY)
def test_nothing_relevant_scores_zero(metric):
    assert metric(["a", "b"], set(), 10) == 0.0
    assert metric([], {"a"}, 10) == 0.0


@pytest.mark.parametrize("metric", ACCURACY)
def test_k_must_be_positive(metric):
    with pytest.raises(ValueError):
        metric(["a"], {"a"}, 0)


def test_mean_skips_users_without_relevant_items():
    lists = [["a"], ["b"], ["c"]]
    assert mean_at_k(recall_at_k, lists, [{"a"}, {"x"}, set()], k=1) == 0.5
    assert mean_at_k(recall_at_k, lists, [set(), set(), set()], k=1) == 0.0
    with pytest.raises(ValueError):
        mean_at_k(recall_at_k, lists, [{"a"}], k=1)


def test_relevant_sets_and_users_per_item_read_positive_entries():
    # a stored zero is no interaction; a repeated (user, item) entry is one user
    held = sp.csr_matrix(
        (
            np.array([1.0, 2.0, 0.0, 3.0, 1.0]),
            (np.array([0, 0, 1, 1, 2]), np.array([1, 1, 2, 0, 1])),
        ),
        shape=(3, 3),
    )
    assert relevant_sets(held, np.array([2, 0, 1])) == [{1}, {1}, {0}]
    np.testing.assert_array_equal(users_per_item(held), [1, 2, 0])


# --- known answers: beyond accuracy ---------------------------------------------------------------


def test_catalog_coverage_counts_distinct_items_and_ignores_padding():
    assert catalog_coverage([[0, 1], np.array([1, 2]), [NO_ITEM]], n_items=10) == pytest.approx(0.3)
    assert catalog_coverage([], n_items=4) == 0.0


def test_intra_list_diversity_known_answers():
    orthogonal = np.array([[1.0, 0.0], [0.0, 2.0]])
    # pairs (0,1): same direction -> 0; (0,2) and (1,2): orthogonal -> 1
    mixed = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0]])
    single = np.array([[1.0, 1.0]])  # no pairs: skipped
    assert intra_list_diversity([orthogonal]) == pytest.approx(1.0)
    assert intra_list_diversity([orthogonal, mixed, single]) == pytest.approx((1 + 2 / 3) / 2)
    assert intra_list_diversity([np.array([[1.0, 0.0], [-1.0, 0.0]])]) == pytest.approx(2.0)
    assert intra_list_diversity([single]) == 0.0


def test_popularity_share_counts_filled_slots():
    top = {0}
    assert popularity_share([[0, 1, 2], np.array([0, 5, NO_ITEM])], top) == pytest.approx(2 / 5)
    assert popularity_share([[NO_ITEM]], top) == 0.0


def test_most_popular_takes_the_top_share_by_distinct_users():
    # item users: 0 -> 1, 1 -> 3, 2 -> 3, 3 -> 2 (user 0's heavy weight on item 0 counts once)
    train = sp.csr_matrix(
        np.array(
            [
                [9.0, 1.0, 1.0, 0.0],
                [0.0, 1.0, 1.0, 1.0],
                [0.0, 1.0, 1.0, 1.0],
            ]
        )
    )
    assert most_popular(train, share=0.01) == {1}  # at least one item; ties: lower index
    assert most_popular(train, share=0.5) == {1, 2}
    assert most_popular(train, share=0.75) == {1, 2, 3}


# --- properties -----------------------------------------------------------------------------------

ITEMS = list(range(30))


@st.composite
def ranked_and_relevant(draw: st.DrawFn) -> tuple[list[int], set[int], int]:
    ranked = draw(st.lists(st.sampled_from(ITEMS), max_size=20))
    relevant = draw(st.sets(st.sampled_from(ITEMS), max_size=15))
    k = draw(st.integers(1, 25))
    return ranked, relevant, k


@pytest.mark.parametrize("metric", ACCURACY)
@given(case=ranked_and_relevant())
def test_accuracy_is_between_zero_and_one(metric, case):
    ranked, relevant, k = case
    value = metric(ranked, relevant, k)
    assert 0.0 <= value <= 1.0 + 1e-12
    hit = any(item in relevant for item in ranked[:k])
    assert (value > 0) == hit


@pytest.mark.parametrize("metric", ACCURACY)
@given(
    relevant=st.sets(st.sampled_from(ITEMS), min_size=1, max_size=15),
    k=st.integers(1, 25),
    seed=st.integers(0, 2**16),
)
def test_a_perfect_list_scores_one(metric, relevant, k, seed):
    rng = np.random.default_rng(seed)
    others = [i for i in ITEMS if i not in relevant]
    ranked = list(rng.permutation(sorted(relevant))) + list(rng.permutation(others))
    assert metric(np.array(ranked), relevant, k) == pytest.approx(1.0)


@given(
    vectors=st.lists(
        st.lists(
            st.lists(st.floats(0, 10, allow_nan=False), min_size=3, max_size=3),
            min_size=0,
            max_size=6,
        ),
        max_size=5,
    )
)
def test_diversity_of_non_negative_vectors_is_between_zero_and_one(vectors):
    lists = [np.array(v, dtype=np.float64).reshape(len(v), 3) for v in vectors]
    assert 0.0 <= intra_list_diversity(lists) <= 1.0 + 1e-9


@given(
    lists=st.lists(st.lists(st.sampled_from([NO_ITEM, *ITEMS]), max_size=10), max_size=10),
    top=st.sets(st.sampled_from(ITEMS), max_size=5),
)
def test_coverage_and_popularity_share_are_shares(lists, top):
    assert 0.0 <= catalog_coverage(lists, len(ITEMS)) <= 1.0
    assert 0.0 <= popularity_share(lists, top) <= 1.0
