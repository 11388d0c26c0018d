"""Stage-1 fusion: reciprocal rank and hit rates measured by the build."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.candidates import merge
from app.candidates.base import SourceResult
from app.candidates.fusion import (
    BANDS,
    Calibrated,
    ReciprocalRank,
    band,
    fit_calibrated,
    from_manifest,
)
from app.domain import HitTable, SourceHit


def result(items: list[int]) -> SourceResult:
    return SourceResult(np.asarray(items, dtype=np.int64), np.ones(len(items), np.float32))


def rates(first: float, rest: float) -> list[float]:
    return [first] + [rest] * (BANDS - 1)


def test_bands_double_in_width():
    assert [band(r) for r in (1, 2, 3, 4, 7, 8, 1000)] == [0, 1, 1, 2, 2, 3, 9]
    assert band(10**9) == BANDS - 1


def test_calibrated_order_follows_the_measured_rates():
    # a's first hit is rarely endorsed, b's first hit usually is
    fusion = Calibrated({"a": rates(0.01, 0.01), "b": rates(0.5, 0.1)})
    merged = merge([("a", result([1, 2])), ("b", result([3, 4]))], 10, fusion)
    assert merged.items.tolist() == [3, 4, 1, 2]
    # reciprocal rank alone interleaves them
    assert merge([("a", result([1, 2])), ("b", result([3, 4]))], 10).items.tolist() == [1, 3, 2, 4]


def test_calibrated_sums_every_source_and_counts_unknown_sources_as_the_weakest():
    fusion = Calibrated({"a": rates(0.2, 0.1), "b": rates(0.3, 0.05)})
    both = [SourceHit("a", 1, 0.0), SourceHit("b", 2, 0.0)]
    assert fusion.score(both) == pytest.approx(0.2 + 0.05, abs=1e-6)
    assert fusion.score([SourceHit("new_source", 1, 0.0)]) == pytest.approx(0.05, abs=1e-6)


def test_fit_measures_hit_rates_that_never_rise_with_depth():
    hits = [
        [[SourceHit("a", 1, 0)], [SourceHit("a", 2, 0)], [SourceHit("b", 1, 0)]],
        [[SourceHit("a", 1, 0)], [SourceHit("a", 3, 0), SourceHit("b", 2, 0)]],
    ]
    endorsed = [np.array([True, False, False]), np.array([True, True])]
    fusion = fit_calibrated(hits, endorsed, smoothing=0.0)
    a, b = fusion.hit_rates["a"], fusion.hit_rates["b"]
    assert a[0] == 1.0 and a[1] == 0.5  # rank 1: 2 of 2; ranks 2-3: 1 of 2
    assert b[0] == 0.0 and b[1] == 0.0  # rank 2 was endorsed (1 of 1): never above rank 1
    assert all(np.diff(a) <= 0) and all(np.diff(b) <= 0)
    smoothed = fit_calibrated(hits, endorsed, smoothing=20.0)
    assert 0 < smoothed.hit_rates["b"][0] < smoothed.hit_rates["a"][0]


def test_manifest_round_trip_and_bad_entries():
    fusion = Calibrated({"a": rates(0.4, 0.2)})
    again = from_manifest(fusion.to_manifest())
    assert isinstance(again, Calibrated)
    assert again.hit_rates["a"].tolist() == fusion.hit_rates["a"].tolist()
    assert isinstance(from_manifest(None), ReciprocalRank)
    with pytest.raises(ValueError, match="16 values"):
        from_manifest({"kind": "calibrated", "hit_rates": {"a": [0.5]}})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Calibrated({"a": rates(1.5, 0.1)})


@given(
    st.lists(st.lists(st.integers(0, 40), max_size=15, unique=True), min_size=1, max_size=4),
    st.integers(1, 30),
    st.lists(st.floats(0, 1), min_size=BANDS, max_size=BANDS),
)
def test_merge_with_any_fusion_keeps_the_best_unique_items(lists, limit, weights):
    fusion = Calibrated({f"s{n}": sorted(weights, reverse=True) for n in range(len(lists))})
    results = [(f"s{n}", result(items)) for n, items in enumerate(lists)]
    merged = merge(results, limit, fusion)
    union = {i for items in lists for i in items}
    assert len(merged) == min(limit, len(union))
    assert len(set(merged.items.tolist())) == len(merged)
    fused = [fusion.score(h) for h in merged.hits]
    assert all(a >= b for a, b in itertools.pairwise(fused))


def merge_by_loop(results, limit, fusion):
    """The reference: one hit object at a time, each item scored from its list of hits."""
    hits: dict[int, list[SourceHit]] = {}
    for name, found in results:
        for rank, (item, score) in enumerate(
            zip(found.items.tolist(), found.scores.tolist(), strict=True), 1
        ):
            anchor = None if found.anchors is None else int(found.anchors[rank - 1])
            hits.setdefault(item, []).append(
                SourceHit(
                    name, rank, float(score), anchor if anchor is not None and anchor >= 0 else None
                )
            )
    union = list(hits)
    fused = np.array([fusion.score(hits[i]) for i in union])
    order = np.argsort(-fused, kind="stable")[:limit]
    return [union[i] for i in order], [hits[union[i]] for i in order]


@given(
    st.lists(st.lists(st.integers(0, 60), max_size=25, unique=True), max_size=5),
    st.integers(1, 40),
    st.lists(st.floats(0, 1), min_size=BANDS, max_size=BANDS),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_merge_in_columns_equals_merging_hit_by_hit(lists, limit, weights, calibrated, seed):
    """Same items in the same order (ties: first found), same hits, for both fusions; one
    source the calibrated table does not know, anchors on some sources."""
    rng = np.random.default_rng(seed)
    known = {f"s{n}": sorted(weights, reverse=True) for n in range(0, len(lists), 2)}
    fusion = Calibrated(known) if calibrated else ReciprocalRank()
    results = []
    for n, items in enumerate(lists):
        scores = rng.random(len(items)).astype(np.float32)
        anchors = rng.integers(-1, 5, len(items)) if n % 2 else None
        results.append((f"s{n}", SourceResult(np.asarray(items, np.int64), scores, anchors)))
    merged = merge(results, limit, fusion)
    items, hits = merge_by_loop(results, limit, fusion)
    assert merged.items.tolist() == items
    assert merged.hits == hits


def test_deep_ranks_fall_in_the_last_band():
    from app.candidates.fusion import bands

    ranks = np.array([1, 2, 3, 4, 7, 8, 1000, 2**15, 10**9])
    assert bands(ranks).tolist() == [band(int(r)) for r in ranks]


# the hits of up to 12 candidates, up to 4 each
HIT_LISTS = st.lists(
    st.lists(
        st.builds(
            SourceHit,
            st.sampled_from(["cf_ann", "ease", "popular"]),
            st.integers(1, 500),
            st.floats(-5, 5),
            st.one_of(st.none(), st.integers(0, 99)),
        ),
        max_size=4,
    ),
    max_size=12,
)


@given(HIT_LISTS, st.randoms(use_true_random=False))
def test_hits_in_columns_round_trip_and_take_rows_in_any_order(hits, random):
    from app.domain import Candidates

    candidates = Candidates(np.arange(len(hits), dtype=np.int64), table=HitTable.from_lists(hits))
    assert candidates.hits == hits
    rows = random.sample(range(len(hits)), k=random.randint(0, len(hits)))
    taken = candidates.take(np.asarray(rows, dtype=np.int64))
    assert taken.items.tolist() == rows
    assert taken.hits == [hits[r] for r in rows]


@given(HIT_LISTS, st.randoms(use_true_random=False))
def test_hit_lists_made_on_demand_are_the_table_s_lists(hits, random):
    """Rows asked in any order, again, from the end, or as a slice: what `lists` makes."""
    from app.domain import HitLists

    table = HitTable.from_lists(hits)
    lazy = HitLists(table, len(hits))
    assert len(lazy) == len(hits)
    for _ in range(2 * len(hits)):
        row = random.randrange(-len(hits), len(hits))
        assert lazy[row] == hits[row]
    assert lazy[1::2] == hits[1::2] and list(lazy) == table.lists(len(hits))
    with pytest.raises(IndexError):
        lazy[len(hits)]
