"""Item-item relations: affinity sums, anchors, and the two accumulation paths agree."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app import item_relations
from app.item_relations import DenseRelations, NeighbourRelations


def test_affinity_known_answer():
    neighbours = np.array([[1, 2], [2, -1], [0, 1], [-1, -1]], dtype=np.int32)
    weights = np.array([[0.5, 0.25], [1.0, 0.0], [0.4, 0.2], [0, 0]], dtype=np.float32)
    relations = NeighbourRelations(neighbours, weights)
    affinity = relations.affinity(np.array([0, 1]), np.array([2.0, 1.0]))
    # item 1: 0.5*2 (from 0); item 2: 0.25*2 (from 0) + 1.0*1 (from 1)
    assert affinity.items.tolist() == [1, 2]
    np.testing.assert_allclose(affinity.scores, [1.0, 1.5])
    assert affinity.anchors(affinity.items).tolist() == [0, 1]
    np.testing.assert_allclose(affinity.lookup(np.array([2, 3, 1, 0])), [1.5, 0, 1.0, 0])


def test_affinity_ignores_unknown_history_and_handles_none():
    relations = NeighbourRelations(
        np.array([[1], [0]], np.int32), np.array([[1.0], [1.0]], np.float32)
    )
    empty = relations.affinity(np.array([5, -1]), np.array([1.0, 1.0]))
    assert not len(empty.items) and empty.lookup(np.array([0, 1])).tolist() == [0, 0]
    with pytest.raises(ValueError, match="differ"):
        NeighbourRelations(np.zeros((2, 2), np.int32), np.zeros((2, 3), np.float32))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 40),
    st.integers(1, 6),
    st.integers(0, 2**16),
    st.floats(0.5, 1.0),
)
def test_dense_and_sorted_accumulation_agree(n_items, k, seed, decay):
    rng = np.random.default_rng(seed)
    neighbours = rng.integers(-1, n_items, (n_items, k)).astype(np.int32)
    weights = rng.random((n_items, k)).astype(np.float32)
    history = rng.choice(n_items, min(n_items, 8), replace=False)
    mass = rng.random(len(history)).astype(np.float32) + 0.1
    found = neighbours[history]
    scaled = weights[history] * (mass * decay ** np.arange(len(history)))[:, None]
    valid = found >= 0
    source = np.broadcast_to(history[:, None], found.shape)[valid]
    contributions = scaled[valid].astype(np.float32)  # as affinity() computes them
    dense = item_relations._dense(found[valid].astype(np.int64), contributions, source, n_items)
    chosen = NeighbourRelations(neighbours, weights).affinity(history, mass, decay)
    assert chosen.items.tolist() == dense.items.tolist()  # whichever way affinity() took
    by_sort = item_relations._sorted(found[valid].astype(np.int64), scaled[valid], source)
    assert dense.items.tolist() == by_sort.items.tolist()
    np.testing.assert_allclose(dense.scores, by_sort.scores, rtol=1e-5)
    # both anchors are a strongest contributor of their item
    anchors = zip(dense.anchors(dense.items), by_sort.anchors(by_sort.items), strict=True)
    for item, (a, b) in zip(dense.items, anchors, strict=True):
        strongest = scaled[valid][found[valid] == item].max()
        assert np.isclose(scaled[valid][(found[valid] == item) & (source == a)].max(), strongest)
        assert np.isclose(scaled[valid][(found[valid] == item) & (source == b)].max(), strongest)


def test_sorted_accumulation_known_answer_with_tied_contributions():
    # item 7: 0.5 from history item 10, then 0.5 from 11 (a tie: the first given is the anchor);
    # item 3: 0.25 from 10, 0.75 from 12; item 5: only negative, so not related
    found = np.array([7, 3, 7, 3, 5], dtype=np.int64)
    mass = np.array([0.5, 0.25, 0.5, 0.75, -0.1], dtype=np.float32)
    source = np.array([10, 10, 11, 12, 12], dtype=np.int64)
    affinity = item_relations._sorted(found, mass, source)
    assert affinity.items.tolist() == [3, 7]
    np.testing.assert_allclose(affinity.scores, [1.0, 1.0])
    assert affinity.anchors(np.array([7, 3, 5])).tolist() == [10, 12, -1]
    # a NaN contribution makes its item's total NaN (not related) and never hides the others'
    mass[1] = np.nan
    affinity = item_relations._sorted(found, mass, source)
    assert affinity.items.tolist() == [7]
    assert affinity.anchors(np.array([7])).tolist() == [10]


def test_dense_affinity_known_answer_with_negative_weights():
    # covered items 1, 4, 6 of a larger catalog
    weights = np.array([[0, 0.5, -0.4], [0.2, 0, 0.3], [-0.1, 0.6, 0]], dtype=np.float32)
    relations = DenseRelations(np.array([1, 4, 6]), weights)
    affinity = relations.affinity(np.array([4, 9, 1]), np.array([2.0, 5.0, 1.0]))
    # history 4 (w 2) and 1 (w 1); 9 is not covered.
    # item 1: 0.2*2 = 0.4; item 4: 0.5*1 = 0.5; item 6: 0.3*2 - 0.4*1 = 0.2
    assert affinity.items.tolist() == [1, 4, 6]
    np.testing.assert_allclose(affinity.scores, [0.4, 0.5, 0.2], rtol=1e-6)
    assert affinity.anchors(affinity.items).tolist() == [4, 1, 4]
    assert affinity.anchors(np.array([6, 9, 1])).tolist() == [4, -1, 4]
    decayed = relations.affinity(np.array([4, 1]), np.array([1.0, 1.0]), decay=0.5)
    np.testing.assert_allclose(decayed.lookup(np.array([6])), [0.3 - 0.2], rtol=1e-6)
    assert not len(relations.affinity(np.array([9]), np.array([1.0])).items)
    with pytest.raises(ValueError, match="covered"):
        DenseRelations(np.array([1, 2]), np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="ascending"):
        DenseRelations(np.array([2, 1]), np.zeros((2, 2), np.float32))


def _same_affinity(a: item_relations.Affinity, b: item_relations.Affinity, items: np.ndarray):
    assert a.items.tolist() == b.items.tolist()
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.lookup(items), b.lookup(items))
    np.testing.assert_array_equal(a.anchors(a.items), b.anchors(b.items))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**16), st.sampled_from([1.0, 0.9]))
def test_a_remembered_answer_is_the_answer_computed_afresh(seed, decay):
    """Asks repeated in any order (as a request's source, then its feature, interleaved with
    other requests' asks) get what a table that remembers nothing computes."""
    rng = np.random.default_rng(seed)
    n_items, k = 60, 4
    neighbours = rng.integers(-1, n_items, size=(n_items, k)).astype(np.int32)
    knn_weights = rng.random((n_items, k)).astype(np.float32)
    covered = np.sort(rng.choice(n_items, size=20, replace=False)).astype(np.int64)
    dense_weights = rng.normal(size=(20, 20)).astype(np.float32)
    histories = [
        (rng.choice(n_items, size=rng.integers(1, 15), replace=False), rng.random(15))
        for _ in range(7)
    ]
    asks = rng.integers(0, len(histories), size=30)
    everything = np.arange(n_items)
    for make in (
        lambda: NeighbourRelations(neighbours, knn_weights),
        lambda: DenseRelations(covered, dense_weights),
    ):
        remembering = make()
        for ask in asks:
            history, weights = histories[ask]
            weights = weights[: len(history)].astype(np.float32)
            answer = remembering.affinity(history, weights, decay)
            _same_affinity(answer, make().affinity(history, weights, decay), everything)


def test_a_changed_history_array_is_not_answered_from_memory():
    relations = NeighbourRelations(
        np.array([[1], [0], [0]], np.int32), np.array([[1.0], [1.0], [1.0]], np.float32)
    )
    history, weights = np.array([0]), np.array([1.0], dtype=np.float32)
    assert relations.affinity(history, weights).items.tolist() == [1]
    history[0] = 1  # the caller reuses its array
    assert relations.affinity(history, weights).items.tolist() == [0]
    assert relations.affinity(history, weights * 2).scores.tolist() == [2.0]
    assert relations.affinity(history, weights, 0.5).scores.tolist() == [1.0]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**16), st.integers(1, 30))
def test_dense_anchors_are_the_strongest_contributors(seed, asked):
    """The anchor of an item is the history item whose weighted relation to it is largest (the
    first in history order on a tie); items the table does not cover have none."""
    rng = np.random.default_rng(seed)
    covered = np.sort(rng.choice(50, size=25, replace=False)).astype(np.int64)
    weights = np.round(rng.normal(size=(25, 25)), 1).astype(np.float32)  # ties
    relations = DenseRelations(covered, weights)
    history = rng.choice(50, size=int(rng.integers(1, 12)), replace=False)
    mass = np.round(rng.random(len(history)) + 0.5, 1).astype(np.float32)
    items = rng.choice(50, size=asked)
    anchors = relations.affinity(history, mass).anchors(items).tolist()
    row = {int(item): i for i, item in enumerate(covered)}
    in_table = [(h, m) for h, m in zip(history.tolist(), mass.tolist(), strict=True) if h in row]
    for item, anchor in zip(items.tolist(), anchors, strict=True):
        if item not in row or not in_table:
            assert anchor == -1
            continue
        strengths = [np.float32(weights[row[h], row[item]]) * np.float32(m) for h, m in in_table]
        assert anchor == in_table[int(np.argmax(strengths))][0]


def test_a_served_version_maps_its_item_neighbours_and_reads_the_same_affinities(built_catalog):
    """The neighbour arrays grow with the catalog (4 GB at 10M items): serving maps them
    read-only instead of reading them, and answers exactly as from the arrays read whole."""
    import asyncio

    from app.runtime import Runtime
    from app.store import RELATIONS

    runtime = asyncio.run(Runtime.open(built_catalog))
    mapped = runtime.relations["item_knn"]
    assert isinstance(mapped, NeighbourRelations)
    assert isinstance(mapped.neighbours, np.memmap) and not mapped.neighbours.flags.writeable
    assert isinstance(mapped.weights, np.memmap) and not mapped.weights.flags.writeable
    assert not isinstance(runtime.relations["ease"].weights, np.memmap)  # bounded: read whole
    files = [runtime.path / name for name in RELATIONS["item_knn"]]
    read = NeighbourRelations(*(np.load(f, allow_pickle=False) for f in files))
    history = np.flatnonzero((read.neighbours >= 0).any(axis=1))[:40]
    weights = np.linspace(1.0, 2.0, len(history))
    got, want = mapped.affinity(history, weights), read.affinity(history, weights)
    assert len(want.items) > 0
    np.testing.assert_array_equal(got.items, want.items)
    np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_array_equal(got.anchors(got.items), want.anchors(want.items))
