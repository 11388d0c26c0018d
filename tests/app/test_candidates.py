from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, date, datetime, timedelta

import lancedb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.candidates import CandidatesConfig, CandidateStage, merge
from app.candidates.ann import VectorIndex
from app.candidates.base import (
    EPOCH,
    CandidateSource,
    ItemGate,
    SourceConfig,
    SourceInput,
    SourceResult,
    keep_allowed,
    top_k,
)
from app.candidates.fusion import RRF_K
from app.candidates.memory_search import NormOrderedSearch
from app.candidates.sources import (
    SOURCES,
    CfAnn,
    ContentAnn,
    Exploration,
    Fresh,
    ItemToItem,
    Popular,
)
from app.candidates.sources.ease import Ease, EaseConfig
from app.candidates.sources.exploration import ExplorationConfig
from app.candidates.sources.fresh import FreshConfig
from app.candidates.sources.item_knn import ItemKnn, ItemKnnConfig
from app.candidates.sources.item_to_item import ItemToItemConfig
from app.domain import ItemFilter, RecommendationRequest, SourceHit, StageStatus, UserState
from app.item_relations import DenseRelations, NeighbourRelations
from app.items import DAY, ItemCatalog

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TODAY = int(AT.timestamp() // DAY)
N = 400
CF_DIM, CONTENT_DIM = 4, 8
GENRE_POOL = ["drama", "comedy", "horror", "sci'fi"]
EXACT = {"exact": 1}


def day(d: date) -> float:
    return float((d - EPOCH).days)


def make_catalog(
    ids: list[str],
    genres: list[list[str]],
    released_day: np.ndarray,
    *,
    popularity: np.ndarray | None = None,
    popularity_pct: np.ndarray | None = None,
    in_cf: np.ndarray | None = None,
    content: np.ndarray | None = None,
    cf: np.ndarray | None = None,
    seed: int = 0,
) -> ItemCatalog:
    n = len(ids)
    rng = np.random.default_rng(seed)
    genre_names = sorted({g for gs in genres for g in gs})
    genre_matrix = np.array([[g in gs for g in genre_names] for gs in genres], dtype=bool)
    if content is None:
        content = rng.normal(size=(n, CONTENT_DIM))
        content /= np.linalg.norm(content, axis=1, keepdims=True)
    in_cf = np.ones(n, dtype=bool) if in_cf is None else in_cf
    if cf is None:
        cf = rng.normal(size=(n, CF_DIM)) * in_cf[:, None]
    popularity = rng.exponential(10.0, n) if popularity is None else popularity
    if popularity_pct is None:
        popularity_pct = np.argsort(np.argsort(popularity)) / max(1, n - 1)
    id_array = np.asarray(ids, dtype=object)
    return ItemCatalog(
        ids=id_array,
        index=pd.Index(id_array),
        titles=id_array.copy(),
        descriptions=id_array.copy(),
        genres=genres,
        genre_names=genre_names,
        genre_matrix=genre_matrix.reshape(n, len(genre_names)),
        series=np.full(n, -1, dtype=np.int32),
        series_names=[],
        series_position=np.full(n, np.nan),
        released_day=np.asarray(released_day, dtype=np.float64),
        first_seen_day=np.asarray(released_day, dtype=np.float64),
        n_users=np.ones(n),
        mean_rating=np.full(n, np.nan),
        popularity=np.asarray(popularity, dtype=np.float64),
        popularity_pct=np.asarray(popularity_pct, dtype=np.float64),
        in_cf=in_cf,
        content=np.ascontiguousarray(content, dtype=np.float32),
        cf=np.ascontiguousarray(cf, dtype=np.float32),
    )


def synthetic_catalog() -> ItemCatalog:
    rng = np.random.default_rng(11)
    ids = [f"item-{i}" for i in range(N)]
    ids[7], ids[8] = "o'brien", "rock'n'roll"
    genres = [
        sorted(rng.choice(GENRE_POOL, size=int(rng.integers(0, 3)), replace=False).tolist())
        for _ in range(N)
    ]
    released = (TODAY - rng.integers(-5, 400, N)).astype(np.float64)  # a few in the future
    return make_catalog(ids, genres, released, in_cf=rng.random(N) > 0.1, seed=12)


def vectors(array: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(
        pa.array(np.ascontiguousarray(array, dtype=np.float32).ravel()), array.shape[1]
    )


def write_table(path, items: ItemCatalog, released: list[int | None] | None = None):
    """The items table columns the sources search and the gate's SQL reads."""
    days = [int(d) for d in items.released_day] if released is None else released
    data = pa.table(
        {
            "item_id": pa.array(list(items.ids), pa.string()),
            "item_index": pa.array(np.arange(len(items), dtype=np.int32)),
            "genres": pa.array(items.genres, pa.list_(pa.string())),
            "released": pa.array(days, pa.int32()).cast(pa.date32()),
            "first_seen": pa.array(
                [None if np.isnan(d) else int(d * 86_400) for d in items.first_seen_day],
                pa.int64(),
            ).cast(pa.timestamp("s")),
            "content_vector": vectors(items.content),
            "cf_vector": vectors(items.cf),
        }
    )
    return lancedb.connect(str(path)).create_table("items", data)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    path = tmp_path_factory.mktemp("catalog")
    items = synthetic_catalog()
    write_table(path, items)
    return path, items


async def open_indexes(path) -> tuple[VectorIndex, VectorIndex]:
    db = await lancedb.connect_async(str(path))
    table = await db.open_table("items")
    return VectorIndex(table, "cf_vector", EXACT), VectorIndex(table, "content_vector", EXACT)


def ease_relations(items: ItemCatalog) -> DenseRelations:
    """Signed weights over every other item: CF similarity, centred."""
    covered = np.arange(0, len(items), 2)
    weights = items.cf[covered] @ items.cf[covered].T
    weights -= weights.mean()
    np.fill_diagonal(weights, 0.0)
    return DenseRelations(covered, weights.astype(np.float32))


def neighbour_lists(items: ItemCatalog, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Top-k neighbours per item by CF similarity, as the build stores them."""
    sims = items.cf @ items.cf.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order.astype(np.int32), np.take_along_axis(sims, order, axis=1).astype(np.float32)


def build_sources(
    items: ItemCatalog, cf: VectorIndex, content: VectorIndex, limit: int
) -> dict[str, CandidateSource]:
    """One configured instance of every registered source."""
    knn = neighbour_lists(items)
    return {
        "cf_ann": CfAnn(SourceConfig(limit=limit), cf),
        "content_ann": ContentAnn(SourceConfig(limit=limit), content),
        "item_to_item": ItemToItem(
            ItemToItemConfig(limit=limit, anchors=3, per_anchor=15), items, cf, content
        ),
        "item_knn": ItemKnn(ItemKnnConfig(limit=limit), NeighbourRelations(*knn)),
        "ease": Ease(EaseConfig(limit=limit), ease_relations(items)),
        "fresh": Fresh(FreshConfig(limit=limit, window_days=60), items),
        "popular": Popular(SourceConfig(limit=limit), items),
        "exploration": Exploration(ExplorationConfig(limit=limit, sample=150), items),
    }


def request(
    flt: ItemFilter | None = None, at: datetime = AT, user_id: str = "u1"
) -> RecommendationRequest:
    return RecommendationRequest(user_id=user_id, count=10, at=at, filter=flt or ItemFilter())


def user(
    consumed: set[int] | None = None,
    recent: list[int] | None = None,
    cf_vector: np.ndarray | None = None,
    content_vector: np.ndarray | None = None,
    user_id: str = "u1",
    weights: list[float] | None = None,
) -> UserState:
    """A user whose endorsed history is `recent` (weights 1 unless given)."""
    recent = recent or []
    return UserState(
        user_id=user_id,
        known=True,
        cf_vector=cf_vector,
        content_vector=content_vector,
        recent_items=recent,
        consumed=consumed or set(),
        dismissed=set(),
        history=np.asarray(recent, dtype=np.int64),
        history_weights=np.asarray(weights or [1.0] * len(recent), dtype=np.float32),
    )


def ranked_allowed(scores: np.ndarray, gate: ItemGate, k: int) -> list[int]:
    """The exact answer: the k best allowed items by score."""
    allowed = np.flatnonzero(gate.allows(np.arange(len(scores))))
    return allowed[np.argsort(-scores[allowed], kind="stable")][:k].tolist()


# --- ItemGate -------------------------------------------------------------------------------------

GATE_DAY = date(2024, 1, 10)
D = day(GATE_DAY)


def gate_catalog() -> ItemCatalog:
    return make_catalog(
        ["a", "o'brien", "c", "d", "e", "f"],
        [["drama"], ["comedy"], ["drama", "horror"], [], ["sci'fi"], ["comedy"]],
        # the day before, the day itself, later that same day (first seen), the day after,
        # unknown, a month after
        np.array([D - 1, D, D + 0.5, D + 1, np.nan, D + 30]),
    )


def allowed(gate: ItemGate) -> list[int]:
    return np.flatnonzero(gate.allows(np.arange(len(gate.items)))).tolist()


def test_gate_without_filter_allows_everything():
    gate = ItemGate.for_request(request(), user(consumed={0, 3}), gate_catalog(), False)
    assert allowed(gate) == [0, 1, 2, 3, 4, 5]
    assert gate.sql is None
    assert gate.allows(np.zeros(0, dtype=np.int64)).tolist() == []


def test_gate_genres_any_of():
    flt = ItemFilter(genres=("drama", "western"))
    gate = ItemGate.for_request(request(flt), user(), gate_catalog(), True)
    assert allowed(gate) == [0, 2]
    assert gate.sql == "array_has_any(genres, ['drama', 'western'])"
    only_unknown = ItemGate.for_request(
        request(ItemFilter(genres=("western",))), user(), gate_catalog(), True
    )
    assert allowed(only_unknown) == []


def test_gate_released_strictly_after_the_date():
    gate = ItemGate.for_request(
        request(ItemFilter(released_after=GATE_DAY)), user(), gate_catalog(), True
    )
    assert allowed(gate) == [3, 5]
    assert gate.sql == (
        "(released > date '2024-01-10' OR "
        "(released IS NULL AND first_seen >= timestamp '2024-01-11 00:00:00'))"
    )


def test_gate_excluded_ids_and_consumed():
    flt = ItemFilter(exclude_ids=("o'brien", "not-in-catalog"))
    gate = ItemGate.for_request(request(flt), user(consumed={0, 3}), gate_catalog(), True)
    assert gate.blocked == {0, 1, 3}
    assert allowed(gate) == [2, 4, 5]
    assert gate.sql == "item_id NOT IN ('o''brien', 'not-in-catalog')"
    kept = ItemGate.for_request(request(flt), user(consumed={0, 3}), gate_catalog(), False)
    assert allowed(kept) == [0, 2, 3, 4, 5]


def test_gate_sql_combines_and_quotes():
    flt = ItemFilter(genres=("sci'fi",), exclude_ids=("o'brien",), released_after=GATE_DAY)
    gate = ItemGate.for_request(request(flt), user(), gate_catalog(), True)
    assert gate.sql == (
        "array_has_any(genres, ['sci''fi']) AND (released > date '2024-01-10' OR "
        "(released IS NULL AND first_seen >= timestamp '2024-01-11 00:00:00')) "
        "AND item_id NOT IN ('o''brien')"
    )


def sql_selects(table, sql: str | None) -> list[int]:
    query = table.search()
    if sql:
        query = query.where(sql)
    rows = query.select(["item_index"]).limit(100_000).to_arrow()
    return sorted(rows["item_index"].to_pylist())


@settings(max_examples=40, deadline=None)
@given(
    genres=st.lists(st.sampled_from([*GENRE_POOL, "western"]), max_size=2, unique=True),
    after=st.none() | st.integers(-400, 10).map(lambda d: AT.date() + timedelta(days=d)),
    exclude=st.lists(st.integers(0, 30), max_size=5, unique=True),
)
def test_gate_sql_selects_what_allows_allows(world, genres, after, exclude):
    path, items = world
    table = lancedb.connect(str(path)).open_table("items")
    flt = ItemFilter(
        genres=tuple(genres),
        released_after=after,
        exclude_ids=tuple(items.ids[i] for i in exclude),
    )
    gate = ItemGate.for_request(request(flt), user(), items, True)
    assert sql_selects(table, gate.sql) == allowed(gate)


def test_gate_sql_and_allows_agree_on_unknown_release(tmp_path):
    items = gate_catalog()
    # as ItemCatalog.from_table builds it: a null release falls back to the first-seen day
    items.released_day[4] = items.first_seen_day[4] = D + 5
    table = write_table(
        tmp_path, items, released=[int(D - 1), int(D), int(D), int(D + 1), None, int(D + 30)]
    )
    gate = ItemGate.for_request(request(ItemFilter(released_after=GATE_DAY)), user(), items, True)
    assert sql_selects(table, gate.sql) == allowed(gate)


# --- keep_allowed, top_k --------------------------------------------------------------------------


def test_keep_allowed_filters_then_cuts_keeping_anchors_aligned():
    gate = ItemGate.for_request(request(), user(consumed={1}), gate_catalog(), True)
    result = SourceResult(
        np.array([5, 1, 2, 3]), np.array([0.9, 0.8, 0.7, 0.6]), np.array([4, 4, -1, 0])
    )
    kept = keep_allowed(result, gate, 2)
    assert kept.items.tolist() == [5, 2]
    assert kept.scores.tolist() == [0.9, 0.7]
    assert kept.anchors is not None and kept.anchors.tolist() == [4, -1]
    assert keep_allowed(SourceResult(result.items, result.scores), gate, 10).anchors is None


def test_top_k_known_answer():
    scores = np.array([0.1, 0.9, 0.5, 0.7])
    assert top_k(scores, 2).tolist() == [1, 3]
    assert top_k(scores, 10).tolist() == [1, 3, 2, 0]
    assert top_k(scores, 0).tolist() == []
    assert top_k(np.zeros(0), 3).tolist() == []


@given(st.lists(st.floats(-1e6, 1e6), max_size=30), st.integers(-2, 40))
def test_top_k_takes_the_best(values, k):
    scores = np.array(values, dtype=np.float64)
    top = top_k(scores, k)
    assert len(top) == max(0, min(k, len(scores)))
    assert len(set(top.tolist())) == len(top)
    assert (np.diff(scores[top]) <= 0).all()
    if len(top):
        assert scores[top].tolist() == sorted(scores.tolist(), reverse=True)[: len(top)]


# --- merge ----------------------------------------------------------------------------------------


def result(items: list[int], anchors: list[int] | None = None) -> SourceResult:
    return SourceResult(
        np.asarray(items, dtype=np.int64),
        np.linspace(1.0, 0.5, len(items)),
        None if anchors is None else np.asarray(anchors, dtype=np.int64),
    )


def test_merge_known_answer():
    merged = merge([("a", result([1, 2, 3])), ("b", result([3, 4], anchors=[7, -1]))], 10)
    # item 3: 1/63 + 1/61; item 1: 1/61; items 2 and 4: 1/62 each (first come first)
    assert merged.items.tolist() == [3, 1, 2, 4]
    assert merged.items.dtype == np.int64
    hits = dict(zip(merged.items.tolist(), merged.hits, strict=True))
    assert hits[3] == [SourceHit("a", 3, 0.5), SourceHit("b", 1, 1.0, 7)]
    assert hits[4] == [SourceHit("b", 2, 0.5, None)]
    assert hits[1] == [SourceHit("a", 1, 1.0)]


def test_merge_limit_and_empty():
    merged = merge([("a", result([1, 2, 3])), ("b", result([3, 4]))], 2)
    assert merged.items.tolist() == [3, 1] and len(merged.hits) == 2
    assert len(merge([], 5)) == 0
    assert len(merge([("a", result([]))], 5)) == 0


source_results = st.lists(
    st.tuples(
        st.sampled_from(list(SOURCES)),
        st.lists(st.integers(0, 30), max_size=12, unique=True),
    ),
    max_size=6,
    unique_by=lambda r: r[0],
)


@given(source_results, st.integers(1, 40))
def test_merge_properties(results, limit):
    merged = merge([(name, result(items)) for name, items in results], limit)
    union = {i for _, items in results for i in items}
    assert len(merged) == min(limit, len(union))
    assert len(set(merged.items.tolist())) == len(merged)
    assert set(merged.items.tolist()) <= union
    fused = [sum(1.0 / (RRF_K + h.rank) for h in hits) for hits in merged.hits]
    assert all(a >= b for a, b in itertools.pairwise(fused))
    for item, hits in zip(merged.items.tolist(), merged.hits, strict=True):
        expected = {(name, items.index(item) + 1) for name, items in results if item in items}
        assert {(h.source, h.rank) for h in hits} == expected
        assert len(hits) == len(expected)
        # an item's hits in the order they were found: the order the sources were given in
        found_by = [name for name, items in results if item in items]
        assert [h.source for h in hits] == found_by
    # nothing left out fuses higher than anything kept
    if len(merged) < len(union) and fused:
        dropped = union - set(merged.items.tolist())
        best_dropped = max(
            sum(1.0 / (RRF_K + items.index(i) + 1) for _, items in results if i in items)
            for i in dropped
        )
        assert best_dropped <= min(fused) + 1e-12


# --- every source: the contract -------------------------------------------------------------------


def test_contract_covers_every_registered_source(world):
    path, items = world

    async def names():
        cf, content = await open_indexes(path)
        return {name: type(s) for name, s in build_sources(items, cf, content, 5).items()}

    built = asyncio.run(names())
    assert built == SOURCES


scenarios = st.fixed_dictionaries(
    {
        "genres": st.lists(st.sampled_from([*GENRE_POOL, "western"]), max_size=2, unique=True),
        "after": st.none() | st.integers(-200, 0).map(lambda d: AT.date() + timedelta(days=d)),
        "exclude": st.lists(st.integers(0, N - 1), max_size=6, unique=True),
        "consumed": st.lists(st.integers(0, N - 1), max_size=40, unique=True),
        "consumed_best": st.integers(0, 12),
        "limit": st.integers(1, 60),
        "vectors": st.booleans(),
        "user_id": st.sampled_from(["u1", "u2", "o'brien"]),
        "vector_seed": st.integers(0, 2**16),
    }
)


async def run_scenario(path, items: ItemCatalog, s: dict) -> None:
    rng = np.random.default_rng(s["vector_seed"])
    flt = ItemFilter(
        genres=tuple(s["genres"]),
        released_after=s["after"],
        exclude_ids=tuple(items.ids[i] for i in s["exclude"]),
    )
    cf_vector = rng.normal(size=CF_DIM).astype(np.float32)
    content = rng.normal(size=CONTENT_DIM).astype(np.float32)
    content /= np.linalg.norm(content)
    # What every source would offer first is what a real user has most likely consumed already.
    best = s["consumed_best"]
    consumed = set(s["consumed"])
    for order in (
        np.argsort(-(items.cf @ cf_vector)),
        np.argsort(-(items.content @ content)),
        np.argsort(-items.popularity),
        np.argsort(-np.nan_to_num(items.released_day, nan=-np.inf)),
    ):
        consumed.update(order[:best].tolist())
    state = user(
        consumed=consumed,
        recent=s["consumed"][:5],  # the newest consumed items
        cf_vector=cf_vector if s["vectors"] else None,
        content_vector=content if s["vectors"] else None,
        user_id=s["user_id"],
    )
    req = request(flt, user_id=s["user_id"])
    gate = ItemGate.for_request(req, state, items, True)
    cf, content_index = await open_indexes(path)
    for name, source in build_sources(items, cf, content_index, s["limit"]).items():
        out = await source(SourceInput(req, state, gate))
        found = out.items.tolist()
        assert len(found) <= s["limit"], name
        assert len(set(found)) == len(found), name
        assert all(0 <= i < len(items) for i in found), name
        assert gate.allows(out.items).all(), name
        assert not consumed & set(found), name
        assert len(out.scores) == len(found), name
        assert out.anchors is None or len(out.anchors) == len(found), name
        if out.skipped is not None:
            assert found == [], name


@settings(max_examples=30, deadline=None)
@given(scenarios)
def test_every_source_keeps_the_contract(world, scenario):
    path, items = world
    asyncio.run(run_scenario(path, items, scenario))


# --- known answers per source ---------------------------------------------------------------------


async def test_popular_walks_popularity_order_past_blocked_items(world):
    _, items = world
    order = np.argsort(-items.popularity, kind="stable")
    consumed = set(order[[0, 2, 3]].tolist())
    state = user(consumed=consumed)
    gate = ItemGate.for_request(request(), state, items, True)
    out = await Popular(SourceConfig(limit=5), items)(SourceInput(request(), state, gate))
    assert out.items.tolist() == [int(i) for i in order if i not in consumed][:5]
    np.testing.assert_allclose(out.scores, items.popularity[out.items], rtol=1e-6)


async def test_fresh_keeps_the_window_and_ranks_by_profile(world):
    _, items = world
    today = AT.timestamp() / DAY
    in_window = (items.released_day >= today - 30) & (items.released_day <= today)
    profile = items.content[0]
    state = user(content_vector=profile)
    gate = ItemGate.for_request(request(), state, items, True)
    out = await Fresh(FreshConfig(limit=10, window_days=30), items)(
        SourceInput(request(), state, gate)
    )
    candidates = np.flatnonzero(in_window)
    assert 0 < len(out) <= 10
    expected = candidates[np.argsort(-(items.content[candidates] @ profile))][:10]
    assert out.items.tolist() == expected.tolist()
    # a cold user gets the same window, ranked by popularity and age instead
    cold = await Fresh(FreshConfig(limit=1000, window_days=30), items)(
        SourceInput(request(), user(), gate)
    )
    assert sorted(cold.items.tolist()) == candidates.tolist()
    assert (np.diff(cold.scores) <= 0).all()


async def test_fresh_scores_a_seeded_sample_of_a_large_window(world):
    _, items = world
    today = AT.timestamp() / DAY
    window = np.flatnonzero((items.released_day >= today - 400) & (items.released_day <= today))
    assert len(window) > 20, "the world needs a window larger than the sample"
    profile = items.content[0]
    state = user(content_vector=profile)
    gate = ItemGate.for_request(request(), state, items, True)
    source = Fresh(FreshConfig(limit=1000, window_days=400, sample=20), items)
    out = await source(SourceInput(request(), state, gate))
    again = await source(SourceInput(request(), state, gate))
    assert 0 < len(out) <= 20 and set(out.items.tolist()) <= set(window.tolist())
    assert out.items.tolist() == again.items.tolist()  # the same user and day: the same sample
    other = await source(
        SourceInput(request(), user(user_id="u-other", content_vector=profile), gate)
    )
    assert set(other.items.tolist()) != set(out.items.tolist())


async def test_fresh_skips_when_nothing_is_new(world):
    _, items = world
    long_ago = AT - timedelta(days=5000)
    req = request(at=long_ago)
    gate = ItemGate.for_request(req, user(), items, True)
    out = await Fresh(FreshConfig(limit=10), items)(SourceInput(req, user(), gate))
    assert out.skipped is not None and len(out) == 0


async def test_exploration_samples_the_tail_deterministically(world):
    _, items = world
    config = ExplorationConfig(limit=20, sample=100, max_popularity_pct=0.6, min_popularity_pct=0.3)
    source = Exploration(config, items)
    gate = ItemGate.for_request(request(), user(), items, True)
    first = await source(SourceInput(request(), user(), gate))
    again = await source(SourceInput(request(), user(), gate))
    assert len(first) == 20
    assert first.items.tolist() == again.items.tolist()
    pct = items.popularity_pct[first.items]
    assert ((pct >= 0.3) & (pct <= 0.6)).all()
    profile = items.content[1]
    fitted = await source(SourceInput(request(), user(content_vector=profile), gate))
    np.testing.assert_allclose(fitted.scores, items.content[fitted.items] @ profile, rtol=1e-5)
    assert (np.diff(fitted.scores) <= 0).all()


async def test_cf_and_content_ann_return_the_exact_best_allowed(world):
    path, items = world
    cf, content = await open_indexes(path)
    rng = np.random.default_rng(5)
    user_cf = rng.normal(size=CF_DIM).astype(np.float32)
    user_content = items.content[3]
    # block the best few by consumption and filter by genre and date
    consumed = set(np.argsort(-(items.cf @ user_cf))[:8].tolist())
    flt = ItemFilter(genres=("drama", "sci'fi"), released_after=AT.date() - timedelta(days=300))
    state = user(consumed=consumed, cf_vector=user_cf, content_vector=user_content)
    gate = ItemGate.for_request(request(flt), state, items, True)
    given_ = SourceInput(request(flt), state, gate)
    out = await CfAnn(SourceConfig(limit=12), cf)(given_)
    assert out.items.tolist() == ranked_allowed(items.cf @ user_cf, gate, 12)
    assert (np.diff(out.scores) <= 0).all()
    out = await ContentAnn(SourceConfig(limit=12), content)(given_)
    assert out.items.tolist() == ranked_allowed(items.content @ user_content, gate, 12)


async def test_vector_index_finds_the_nearest_by_dot_product(world):
    path, items = world
    cf, content = await open_indexes(path)
    for index, matrix in ((cf, items.cf), (content, items.content)):
        query = matrix[10] + 0.5 * matrix[20]
        found, scores = await index.nearest(query, 15)
        assert found.dtype == np.int64 and scores.dtype == np.float32
        assert found.tolist() == np.argsort(-(matrix @ query))[:15].tolist()
        assert (np.diff(scores) <= 0).all()
        limited, _ = await index.nearest(query, 15, "item_index < 100")
        assert limited.tolist() == [i for i in np.argsort(-(matrix @ query)) if i < 100][:15]


async def test_vector_index_scores_are_dot_products(world):
    path, items = world
    cf, _ = await open_indexes(path)
    query = items.cf[0]
    found, scores = await cf.nearest(query, 10)
    np.testing.assert_allclose(scores, items.cf[found] @ query, rtol=1e-4, atol=1e-5)


async def test_item_to_item_in_memory_finds_what_lancedb_finds(world):
    """In memory the anchors are searched one after another; the answer is the same."""
    path, items = world
    cf, content = await open_indexes(path)
    memory_cf = VectorIndex(
        cf.table, "cf_vector", {"memory": 1}, memory=NormOrderedSearch(items.cf)
    )
    memory_content = VectorIndex(
        content.table, "content_vector", {"memory": 1}, memory=NormOrderedSearch(items.content)
    )
    config = ItemToItemConfig(limit=50, anchors=4, per_anchor=6)
    recent = [*np.flatnonzero(~items.in_cf)[:2].tolist(), *np.flatnonzero(items.in_cf)[:2].tolist()]
    state = user(consumed=set(recent[1:3]), recent=recent)
    gate = ItemGate.for_request(request(), state, items, True)
    asked = SourceInput(request(), state, gate)
    on_disk = await ItemToItem(config, items, cf, content)(asked)
    in_memory = await ItemToItem(config, items, memory_cf, memory_content)(asked)
    assert len(on_disk) > 6 and in_memory.items.tolist() == on_disk.items.tolist()
    assert in_memory.anchors is not None and on_disk.anchors is not None
    assert in_memory.anchors.tolist() == on_disk.anchors.tolist()
    np.testing.assert_allclose(in_memory.scores, on_disk.scores, rtol=1e-4, atol=1e-5)


async def test_ann_sources_skip_without_a_vector(world):
    path, items = world
    cf, content = await open_indexes(path)
    gate = ItemGate.for_request(request(), user(), items, True)
    for source in (CfAnn(SourceConfig(), cf), ContentAnn(SourceConfig(), content)):
        out = await source(SourceInput(request(), user(), gate))
        assert out.skipped is not None and len(out) == 0


async def test_item_to_item_finds_each_anchors_neighbours(world):
    path, items = world
    cf, content = await open_indexes(path)
    in_cf = int(np.flatnonzero(items.in_cf)[0])
    not_in_cf = int(np.flatnonzero(~items.in_cf)[0])
    source = ItemToItem(ItemToItemConfig(limit=50, per_anchor=4), items, cf, content)

    state = user(consumed={in_cf}, recent=[in_cf])
    gate = ItemGate.for_request(request(), state, items, True)
    out = await source(SourceInput(request(), state, gate))
    assert out.items.tolist() == ranked_allowed(items.cf @ items.cf[in_cf], gate, 4)
    assert out.anchors is not None and out.anchors.tolist() == [in_cf] * 4

    # an item the CF model has not seen: its content neighbours; the anchor itself never comes
    # back even when nothing blocks it
    state = user(recent=[not_in_cf])
    gate = ItemGate.for_request(request(), state, items, False)
    out = await source(SourceInput(request(), state, gate))
    neighbours = [
        i
        for i in ranked_allowed(items.content @ items.content[not_in_cf], gate, 5)
        if i != not_in_cf
    ]
    assert out.items.tolist() == neighbours[:4]

    # two anchors interleave, the most recent first, each item once with its first anchor
    state = user(consumed={in_cf, not_in_cf}, recent=[not_in_cf, in_cf])
    gate = ItemGate.for_request(request(), state, items, True)
    out = await source(SourceInput(request(), state, gate))
    assert out.anchors is not None
    first = out.items[out.anchors == not_in_cf].tolist()
    assert first[0] == out.items[0]
    assert set(out.anchors.tolist()) <= {in_cf, not_in_cf}
    assert len(set(out.items.tolist())) == len(out)

    skipped = await source(SourceInput(request(), user(), gate))
    assert skipped.skipped is not None


class CountingIndex:
    """A VectorIndex's search, counting the searches it is asked for."""

    def __init__(self, index: VectorIndex) -> None:
        self.index, self.column, self.memory, self.asked = index, index.column, index.memory, []

    async def nearest(self, vector, k, where=None, allows=None):  # type: ignore[no-untyped-def]
        self.asked.append((k, where))
        return await self.index.nearest(vector, k, where, allows)


async def test_item_to_item_remembers_anchors_and_answers_as_without(world):
    """An anchor's neighbours are searched once (the widest list any user asks for) and cut for
    each user; the answers equal those of a source that remembers nothing."""
    path, items = world
    cf, content = await open_indexes(path)
    counting_cf, counting_content = CountingIndex(cf), CountingIndex(content)
    config = ItemToItemConfig(limit=50, anchors=3, per_anchor=5)
    remembering = ItemToItem(config, items, counting_cf, counting_content)  # type: ignore[arg-type]
    forgetting = ItemToItem(config.model_copy(update={"remembered_anchors": 0}), items, cf, content)
    in_cf = np.flatnonzero(items.in_cf)[:3].tolist()
    not_in_cf = int(np.flatnonzero(~items.in_cf)[0])
    states = [
        user(recent=[in_cf[0], not_in_cf]),
        user(consumed=set(range(40)), recent=[not_in_cf, in_cf[0], in_cf[1]], user_id="u2"),
        user(recent=[in_cf[1], in_cf[2]], user_id="u3"),
    ]
    for state in states:
        gate = ItemGate.for_request(request(), state, items, True)
        asked = SourceInput(request(), state, gate)
        got, expected = await remembering(asked), await forgetting(asked)
        assert got.items.tolist() == expected.items.tolist()
        assert got.anchors is not None and expected.anchors is not None
        assert got.anchors.tolist() == expected.anchors.tolist()
    # four distinct anchors over seven uses: each searched once, for 2 * per_anchor + 1
    assert counting_cf.asked == [(11, None)] * 3
    assert counting_content.asked == [(11, None)]


async def test_item_to_item_forgets_the_least_recent_anchor_and_skips_filtered_searches(world):
    path, items = world
    cf, content = await open_indexes(path)
    counting = CountingIndex(cf)
    config = ItemToItemConfig(limit=50, anchors=1, per_anchor=3, remembered_anchors=2)
    source = ItemToItem(config, items, counting, content)  # type: ignore[arg-type]
    a, b, c = np.flatnonzero(items.in_cf)[:3].tolist()

    async def ask(anchor: int, flt: ItemFilter | None = None) -> None:
        state = user(recent=[anchor])
        gate = ItemGate.for_request(request(flt), state, items, True)
        await source(SourceInput(request(flt), state, gate))

    for anchor in (a, b, a, c, a, b):  # c pushes out b (a was used after b), then b again
        await ask(anchor)
    assert len(counting.asked) == 4  # a, b, c, b
    await ask(a, ItemFilter(genres=("g0",)))  # a filter: searched with it, not remembered
    assert counting.asked[-1][1] is not None and len(counting.asked) == 5


# --- the stage: every source under its deadline, then the merge -----------------------------------


async def test_stage_runs_every_source_and_merges(world):
    path, items = world
    cf, content = await open_indexes(path)
    sources = list(build_sources(items, cf, content, 30).values())
    for source in sources:
        source.config.deadline_ms = 30_000.0
    config = CandidatesConfig(max_candidates=60)
    stage = CandidateStage(config, sources, items)
    rng = np.random.default_rng(3)
    consumed = set(rng.choice(N, 30, replace=False).tolist())
    state = user(
        consumed=consumed,
        recent=sorted(consumed)[:3],
        cf_vector=rng.normal(size=CF_DIM).astype(np.float32),
        content_vector=items.content[9],
    )
    flt = ItemFilter(genres=("comedy", "horror"))
    out = await stage(request(flt), state)
    found = out.candidates.items.tolist()
    assert 0 < len(found) <= 60
    assert len(set(found)) == len(found)
    assert not consumed & set(found)
    gate = ItemGate.for_request(request(flt), state, items, True)
    assert gate.allows(out.candidates.items).all()
    assert [r.name for r in out.sources] == [f"source:{name}" for name in SOURCES]
    assert all(r.status is StageStatus.OK for r in out.sources), out.sources
    seen_sources = {h.source for hits in out.candidates.hits for h in hits}
    assert seen_sources == set(SOURCES)


class Timed:
    """A source answering `items` after `seconds` (an await: the loop can cut it off)."""

    def __init__(self, name: str, items: list[int], seconds: float, deadline_ms: float) -> None:
        self.name = name  # type: ignore[misc]
        self.config = SourceConfig(deadline_ms=deadline_ms)
        self.items, self.seconds = np.array(items, dtype=np.int64), seconds

    async def __call__(self, given: SourceInput) -> SourceResult:
        await asyncio.sleep(self.seconds)
        return SourceResult(self.items, np.ones(len(self.items), dtype=np.float32))


def timed_stage(merge_ms: float = 5.0) -> CandidateStage:
    sources = [Timed("quick", [1, 2, 3], 0.0, 10_000), Timed("slow", [4, 5], 30.0, 10_000)]
    config = CandidatesConfig(max_candidates=10, merge_ms=merge_ms)
    return CandidateStage(config, sources, synthetic_catalog())  # type: ignore[arg-type]


async def test_a_source_is_cut_off_before_the_stage_deadline_and_the_rest_merged():
    out = await timed_stage(merge_ms=20)(request(), user(), within_ms=100)
    assert out.candidates.items.tolist() == [1, 2, 3]
    quick, slow = out.sources
    assert quick.status is StageStatus.OK and quick.out_count == 3
    assert slow.status is StageStatus.TIMEOUT and slow.detail == "slow exceeded 80 ms"


async def test_a_stage_cut_off_itself_still_merges_the_sources_that_finished():
    from app.candidates import SourceRun

    stage, run = timed_stage(), SourceRun()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):  # the stage's own deadline was never given to it
            await stage(request(), user(), None, run)
    out = stage.salvage(run)
    assert out.candidates.items.tolist() == [1, 2, 3]
    quick, slow = out.sources
    assert quick.status is StageStatus.OK and quick.out_count == 3
    assert slow.status is StageStatus.TIMEOUT and slow.out_count == 0
    assert slow.detail.startswith("slow was cut off with the candidates stage after")
    never = timed_stage().salvage(SourceRun())  # never started: nothing merged, none reported
    assert len(never.candidates) == 0 and never.sources == []


# --- item_knn -------------------------------------------------------------------------------------


async def test_item_knn_sums_weighted_relations_of_the_history_with_anchors():
    neighbours = np.array([[1, 2, -1], [0, 3, -1], [3, -1, -1], [2, 1, -1]], dtype=np.int32)
    scores = np.array([[0.9, 0.5, 0], [0.9, 0.4, 0], [0.8, 0, 0], [0.8, 0.4, 0]], np.float32)
    items = synthetic_catalog()
    source = ItemKnn(ItemKnnConfig(limit=10), NeighbourRelations(neighbours, scores))
    gate = ItemGate.for_request(request(), user(consumed={0}), items, True)
    result = await source(SourceInput(request(), user(recent=[0, 2], weights=[1.0, 2.0]), gate))
    # item 3: 0.8 * 2 (from 2); item 1: 0.9 (from 0); item 2: 0.5 (from 0); 0 is consumed
    assert result.items.tolist() == [3, 1, 2]
    np.testing.assert_allclose(result.scores, [1.6, 0.9, 0.5], rtol=1e-6)
    assert result.anchors is not None and result.anchors.tolist() == [2, 0, 0]


async def test_item_knn_decay_weighs_older_history_less():
    neighbours = np.array([[2, -1], [3, -1], [-1, -1], [-1, -1]], dtype=np.int32)
    scores = np.array([[1.0, 0], [1.0, 0], [0, 0], [0, 0]], np.float32)
    items = synthetic_catalog()
    source = ItemKnn(ItemKnnConfig(limit=10, decay=0.5), NeighbourRelations(neighbours, scores))
    gate = ItemGate.for_request(request(), user(), items, True)
    result = await source(SourceInput(request(), user(recent=[1, 0]), gate))
    assert result.items.tolist() == [3, 2]  # 1 is newer than 0
    np.testing.assert_allclose(result.scores, [1.0, 0.5], rtol=1e-6)


async def test_relation_sources_skip_without_relations_or_history():
    items = synthetic_catalog()
    gate = ItemGate.for_request(request(), user(), items, True)
    for source in (
        ItemKnn(ItemKnnConfig(), NeighbourRelations(*neighbour_lists(items))),
        Ease(EaseConfig(), ease_relations(items)),
    ):
        missing = await type(source)(source.config, None)(
            SourceInput(request(), user(recent=[1]), gate)
        )
        assert missing.skipped and not len(missing)
        assert (await source(SourceInput(request(), user(recent=[]), gate))).skipped


async def test_fresh_and_exploration_score_through_a_partitioned_content_search(world):
    """With the build's partitioned content search, the sampled sources score their samples on
    its projection and refine: a projection that keeps every direction gives the exact answer;
    a lossy one still reports exact scores, best first."""
    from app.candidates.partitioned_search import PartitionedSearch, Partitions

    _, items = world
    content = np.asarray(items.content, dtype=np.float32)
    one = Partitions(content[:1], np.eye(CONTENT_DIM, dtype=np.float32), np.zeros(N, np.int32))
    lossy = Partitions(one.centroids, np.eye(CONTENT_DIM, 2, dtype=np.float32), one.partition_of)
    profile = items.content[2]
    state = user(content_vector=profile)
    gate = ItemGate.for_request(request(), state, items, True)
    given = SourceInput(request(), state, gate)
    fresh = FreshConfig(limit=5, window_days=400, sample=60)
    tail = ExplorationConfig(limit=5, sample=80)
    for make, config in ((Fresh, fresh), (Exploration, tail)):
        exact = await make(config, items)(given)
        whole = PartitionedSearch(content, one, nprobes=1, refine=1)
        projected = await make(config, items, whole)(given)
        assert len(exact) == 5 and projected.items.tolist() == exact.items.tolist()
        np.testing.assert_allclose(projected.scores, exact.scores, rtol=1e-5)
        rough = await make(config, items, PartitionedSearch(content, lossy, 1, refine=2))(given)
        assert len(rough) == 5 and (np.diff(rough.scores) <= 0).all()
        np.testing.assert_allclose(rough.scores, content[rough.items] @ profile, rtol=1e-5)
