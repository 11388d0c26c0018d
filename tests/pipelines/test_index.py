from __future__ import annotations

import lancedb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipelines.index import MIN_ROWS_FOR_INDEX, choose_index, exact_top_k, search

DIM = 32
K = 100


def clustered(n: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    picks = centers[rng.integers(0, len(centers), n)]
    return (picks + 0.3 * rng.normal(size=(n, centers.shape[1]))).astype(np.float32)


def make_table(path, vectors: np.ndarray):
    data = pa.table(
        {
            "item_index": pa.array(np.arange(len(vectors), dtype=np.int32)),
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.ravel()), vectors.shape[1]
            ),
        }
    )
    return lancedb.connect(str(path)).create_table("items", data)


def found(table, query: np.ndarray, k: int, params: dict[str, int]) -> np.ndarray:
    result = search(table, "vector", query, k, params).select(["item_index"]).to_arrow()
    return result["item_index"].to_numpy()


def recall(table, queries: np.ndarray, truth: np.ndarray, k: int, params: dict[str, int]) -> float:
    hits = [
        len(np.intersect1d(found(table, q, k, params), t)) / len(t)
        for q, t in zip(queries, truth, strict=True)
    ]
    return float(np.mean(hits))


# --- exact_top_k ----------------------------------------------------------------------------------


def test_exact_top_k_known_answer():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [-1.0, 0.0]])
    queries = np.array([[1.0, 0.0], [-1.0, 0.5]])
    top = exact_top_k(vectors, queries, 2)
    assert [set(row) for row in top.tolist()] == [{2, 0}, {3, 1}]
    assert set(exact_top_k(vectors, queries, 10)[1].tolist()) == {0, 1, 2, 3}


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 80),
    st.integers(1, 70),
    st.integers(1, 100),
    st.integers(0, 2**32 - 1),
)
def test_exact_top_k_matches_naive_argsort(n, n_queries, k, seed):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, 5)).astype(np.float32)
    queries = rng.normal(size=(n_queries, 5)).astype(np.float32)
    top = exact_top_k(vectors, queries, k)
    assert top.shape == (n_queries, min(k, n))
    scores = queries @ vectors.T
    naive = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, n)]
    for q in range(n_queries):
        assert len(set(top[q].tolist())) == top.shape[1]
        # the same set; compared by score so ties at the k-th place cannot fail it
        np.testing.assert_array_equal(np.sort(scores[q, top[q]]), np.sort(scores[q, naive[q]]))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 300), st.integers(1, 40), st.integers(1, 50), st.integers(1, 2000))
def test_exact_top_k_in_spans_matches_one_product(n, n_queries, k, budget):
    # a small budget makes many queries share each pass over spans of rows
    rng = np.random.default_rng(n * 7919 + budget)
    vectors = rng.normal(size=(n, 4)).astype(np.float32)
    queries = rng.normal(size=(n_queries, 4)).astype(np.float32)
    spans = exact_top_k(vectors, queries, k, budget=budget)
    whole = exact_top_k(vectors, queries, k)
    scores = queries @ vectors.T
    for q in range(n_queries):
        assert len(set(spans[q].tolist())) == spans.shape[1] == min(k, n)
        np.testing.assert_array_equal(np.sort(scores[q, spans[q]]), np.sort(scores[q, whole[q]]))


@given(hnp.arrays(np.float64, (6, 3), elements=st.integers(-3, 3).map(float)))
def test_exact_top_k_with_ties(vectors):
    query = np.ones((1, 3))
    top = exact_top_k(vectors, query, 3)[0]
    scores = vectors @ query[0]
    assert len(set(top.tolist())) == 3
    assert scores[top].min() >= np.sort(scores)[-3]


# --- choose_index on a real LanceDB table ---------------------------------------------------------


@pytest.fixture(scope="module")
def clustered_data():
    rng = np.random.default_rng(42)
    centers = rng.normal(size=(30, DIM))
    vectors = clustered(6_000, rng, centers)
    queries = clustered(25, rng, centers)
    return vectors, queries


def test_choose_index_reaches_recall_with_ann(tmp_path, clustered_data):
    vectors, queries = clustered_data
    assert len(vectors) >= MIN_ROWS_FOR_INDEX
    table = make_table(tmp_path, vectors)
    choice = choose_index(
        table, "vector", vectors, queries, k=K, recall_target=0.95, exact_max_rows=0
    )
    assert choice.column == "vector" and choice.metric == "dot" and choice.k == K
    assert choice.kind != "exact"
    assert choice.tried and all(t["kind"] != "exact" for t in choice.tried)
    assert choice.recall_at_k >= 0.95
    assert choice.search in [t["search"] for t in choice.tried]
    assert [i.index_type for i in table.list_indices()] == ["IvfHnswSq"]

    # the manifest's search parameters reproduce the measured recall (they are what serving uses)
    truth = exact_top_k(vectors, queries, K)
    assert recall(table, queries, truth, K, choice.search) == pytest.approx(
        choice.recall_at_k, abs=0.02
    )
    # and the best hit of every query is the true best
    best = np.argmax(queries @ vectors.T, axis=1)
    assert [found(table, q, 1, choice.search)[0] for q in queries] == best.tolist()


def test_choose_index_keeps_exact_search_when_it_is_the_winner(tmp_path, clustered_data):
    vectors, queries = clustered_data
    table = make_table(tmp_path, vectors)
    choice = choose_index(
        table, "vector", vectors, queries, k=K, recall_target=0.95, exact_max_rows=len(vectors)
    )
    kinds = [t["kind"] for t in choice.tried]
    assert kinds[0] == "exact" and "IVF_HNSW_SQ" in kinds
    exact = next(t for t in choice.tried if t["kind"] == "exact")
    assert exact["recall"] == 1.0
    indexed = [i.index_type for i in table.list_indices()]
    # the table holds the index the choice needs, and no other
    assert indexed == ([] if choice.kind == "exact" else ["IvfHnswSq"])
    assert choice.recall_at_k >= 0.95


def test_small_table_is_searched_exactly(tmp_path):
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(300, 8)).astype(np.float32)
    queries = rng.normal(size=(10, 8)).astype(np.float32)
    table = make_table(tmp_path, vectors)
    choice = choose_index(
        table, "vector", vectors, queries, k=500, recall_target=0.95, exact_max_rows=0
    )
    assert choice.kind == "exact" and choice.search == {"exact": 1}
    assert choice.k == 300 and choice.recall_at_k == 1.0
    assert table.list_indices() == []
    truth = exact_top_k(vectors, queries, 20)
    assert recall(table, queries, truth, 20, choice.search) == 1.0


def test_a_known_choice_is_rebuilt_and_checked_instead_of_searched_again(
    tmp_path, clustered_data, monkeypatch
):
    """At catalog scale the full build rebuilds the snapshot's index only, and keeps it when it
    still reaches the target; a known choice that misses falls back to the whole search."""
    from app.store import IndexChoice
    from pipelines import index

    monkeypatch.setattr(index, "MIN_ROWS_FOR_PQ", 1_000_000)  # no IVF_PQ trials here
    vectors, queries = clustered_data
    first = choose_index(
        make_table(tmp_path / "a", vectors), "vector", vectors, queries, k=K,
        recall_target=0.95, exact_max_rows=0,
    )  # fmt: skip
    monkeypatch.setattr(index, "MIN_ROWS_FOR_PQ", 1_000)
    table = make_table(tmp_path / "b", vectors)
    again = choose_index(
        table, "vector", vectors, queries, k=K, recall_target=0.95, exact_max_rows=0, known=first
    )
    assert [(t["kind"], t["search"]) for t in again.tried] == [(first.kind, first.search)]
    assert again.recall_at_k >= 0.95
    assert [i.index_type for i in table.list_indices()] == ["IvfHnswSq"]

    hopeless = IndexChoice(**{**first.model_dump(), "search": {"ef": K, "nprobes": 1}})
    monkeypatch.setattr(index, "_measure", lambda *a: (0.5, 1.0, 1.0))  # misses the target
    table = make_table(tmp_path / "c", vectors)
    searched = choose_index(
        table, "vector", vectors, queries, k=K, recall_target=0.95, exact_max_rows=0,
        known=hopeless,
    )  # fmt: skip
    assert len(searched.tried) > 1  # it went on to the whole search


def test_at_catalog_scale_skewed_vectors_are_searched_in_memory(tmp_path, monkeypatch):
    """CF-like vectors (a few long, most short): the in-memory exact search is chosen, no
    index is built, and the search serving runs from the choice finds the exact answer."""
    import asyncio

    from app.candidates.ann import VectorIndex, memory_search
    from pipelines import index

    monkeypatch.setattr(index, "SCALE_ROWS", 1_000)
    monkeypatch.setattr(index, "MEMORY_FAST_MS", 1_000.0)  # a busy test machine is fast enough
    rng = np.random.default_rng(5)
    vectors = (rng.normal(size=(6_000, 16)) * rng.lognormal(-3, 1.5, size=(6_000, 1))).astype(
        np.float32
    )
    queries = rng.normal(size=(12, 16)).astype(np.float32)
    table = make_table(tmp_path, vectors)
    choice = choose_index(
        table, "vector", vectors, queries, k=K, recall_target=0.95, exact_max_rows=0
    )
    assert choice.kind == "memory" and choice.search == {"memory": 1}
    assert choice.recall_at_k == 1.0 and table.list_indices() == []
    served = VectorIndex(
        table, "vector", choice.search, K, memory=memory_search(vectors, choice.search)
    )
    items, scores = asyncio.run(served.nearest(queries[0], K))
    truth = exact_top_k(vectors, queries[:1], K)[0]
    assert set(items.tolist()) == set(truth.tolist())
    np.testing.assert_allclose(scores, np.sort(vectors[truth] @ queries[0])[::-1], rtol=1e-4)


def test_reindex_chooses_the_indexes_of_a_built_version_again(tmp_path, built_catalog):
    import shutil

    from app.settings import Settings
    from app.store import CatalogRoot
    from pipelines.reindex import reindex

    root = tmp_path / "catalog"
    shutil.copytree(built_catalog, root, symlinks=True)
    before = CatalogRoot(root).open().manifest
    chosen = reindex(Settings(db_path=root, ann_probe_queries=20))
    after = CatalogRoot(root).open().manifest
    assert set(chosen) == {"cf_vector", "content_vector"}
    for column, choice in chosen.items():
        assert after.indexes[column] == choice and choice.recall_at_k >= 0.95
        assert choice.k == before.indexes[column].k
    assert after.version == before.version and after.ranker == before.ranker


def test_content_vectors_are_read_mapped_from_the_versions_file(built_catalog):
    # reindex and the ANN bench read them as serving does: at 10M items the decoded column
    # (and its sorted copy) was 30 GB
    from app.store import ITEMS, CatalogRoot
    from pipelines.bench_ann import column_in_order, served_vectors

    version = CatalogRoot(built_catalog).open()
    items = version.table(ITEMS)
    content = served_vectors(version, items, "content_vector")
    assert isinstance(content, np.memmap)
    np.testing.assert_array_equal(content, column_in_order(items, "content_vector"))
    cf = served_vectors(version, items, "cf_vector")
    assert not isinstance(cf, np.memmap) and cf.shape[0] == content.shape[0]


def test_at_catalog_scale_unit_vectors_are_searched_in_partitions(tmp_path, monkeypatch):
    """Content-like vectors (unit norm, clustered): the exact in-memory search has nothing to
    prune and is not tried, so the partitioned search is measured, kept, and its partitions
    saved where serving reads them; serving's search from that file reaches the measured recall."""
    import asyncio

    from app.candidates.ann import VectorIndex, memory_search
    from app.candidates.partitioned_search import Partitions
    from pipelines import index

    monkeypatch.setattr(index, "SCALE_ROWS", 1_000)
    monkeypatch.setattr(index, "MEMORY_FAST_MS", 0.0)  # the exact scan never counts as fast
    rng = np.random.default_rng(6)
    centers = rng.normal(size=(40, DIM))
    vectors = clustered(8_000, rng, centers)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[rng.choice(len(vectors), 12, replace=False)]
    table = make_table(tmp_path / "t", vectors)
    version = tmp_path / "version"
    version.mkdir()
    choice = choose_index(
        table, "vector", vectors, queries, k=K, recall_target=0.95, exact_max_rows=0,
        directory=version,
    )  # fmt: skip
    assert choice.kind == "partitioned" and choice.recall_at_k >= 0.95
    # unit-norm rows leave the norm-ordered search nothing to prune: it is not tried on them
    assert "memory" not in [t["kind"] for t in choice.tried]
    assert table.list_indices() == []  # no LanceDB index was needed
    partitions = Partitions.load(version, "vector")
    assert len(partitions.partition_of) == len(vectors)
    served = VectorIndex(
        table, "vector", choice.search, K, memory=memory_search(vectors, choice.search, partitions)
    )
    truth = exact_top_k(vectors, queries, K)
    hits = [
        len(np.intersect1d(asyncio.run(served.nearest(q, K))[0], t)) / K
        for q, t in zip(queries, truth, strict=True)
    ]
    assert np.mean(hits) == pytest.approx(choice.recall_at_k, abs=1e-4)


def test_without_a_version_directory_the_partitioned_search_is_not_tried(tmp_path, monkeypatch):
    from pipelines import index

    monkeypatch.setattr(index, "SCALE_ROWS", 1_000)
    monkeypatch.setattr(index, "MIN_ROWS_FOR_PQ", 1_000_000)
    monkeypatch.setattr(index, "MEMORY_FAST_MS", 0.0)
    rng = np.random.default_rng(6)
    vectors = clustered(6_000, rng, rng.normal(size=(40, DIM)))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = make_table(tmp_path, vectors)
    choice = choose_index(
        table, "vector", vectors, vectors[:8], k=K, recall_target=0.95, exact_max_rows=0
    )
    assert "partitioned" not in {t["kind"] for t in choice.tried}


def test_a_version_searched_in_partitions_is_served_from_them(tmp_path, built_catalog):
    """A manifest that chose the partitioned search: serving refuses the version without its
    partitions file (naming it); with it, content searches run in memory (here probing every
    partition and refining every row: exact search)."""
    import asyncio
    import shutil

    from app.candidates.partitioned_search import PartitionedSearch
    from app.errors import CatalogError
    from app.items import ItemCatalog
    from app.runtime import Runtime
    from app.store import CatalogRoot, write_manifest
    from pipelines.partitions import fit_partitions

    root = tmp_path / "catalog"
    shutil.copytree(built_catalog, root, symlinks=True)
    version = CatalogRoot(root).open()
    manifest = version.manifest
    manifest.indexes["content_vector"] = manifest.indexes["content_vector"].model_copy(
        update={"kind": "partitioned", "search": {"nprobes": 16, "refine": 10_000}}
    )
    write_manifest(version.path, manifest)
    with pytest.raises(CatalogError, match=r"content_vector_partitions\.npz"):
        asyncio.run(Runtime.open(root))

    content = ItemCatalog.from_table(version.table("items")).content
    partitions = fit_partitions(content, np.random.default_rng(0), partitions=16)
    partitions.save(version.path, "content_vector")
    served = asyncio.run(Runtime.open(root)).content_index
    assert isinstance(served.memory, PartitionedSearch)
    query = content[3]
    found, scores = asyncio.run(served.nearest(query, 20))
    assert set(found.tolist()) == set(exact_top_k(content, query[None, :], 20)[0].tolist())
    np.testing.assert_allclose(scores, content[found] @ query, rtol=1e-5)


@pytest.mark.parametrize("budget", [3_000, 700, 50])
def test_exact_top_k_within_a_score_budget_equals_the_unbounded_search(budget):
    """Fewer queries a block, or (past the budget) one query over spans of rows: same rows."""
    rng = np.random.default_rng(9)
    vectors = rng.normal(size=(500, 16)).astype(np.float32)
    queries = rng.normal(size=(70, 16)).astype(np.float32)
    unbounded = exact_top_k(vectors, queries, 40, budget=10**9)
    bounded = exact_top_k(vectors, queries, 40, budget=budget)
    assert bounded.shape == unbounded.shape == (70, 40)
    for got, want in zip(bounded, unbounded, strict=True):
        assert set(got.tolist()) == set(want.tolist())
