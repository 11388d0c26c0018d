"""ANN recall@1000 against exact brute force on a generated catalog, through the serving search."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from app.quantized_rows import CONTENT_INT8_ABOVE, QuantizedRows
from app.runtime import Runtime
from app.settings import Settings
from app.store import CONTENT_FILE, CatalogRoot
from pipelines.build import build
from pipelines.generate import generate_catalog
from pipelines.index import exact_top_k

K = 1000


@pytest.fixture(scope="module")
def indexed_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("gen12k")
    generate_catalog(source, items=12_000, users=1_500, seed=3, with_vectors=True)
    root = tmp_path_factory.mktemp("db12k") / "db"
    # exact search not allowed: an ANN index must be built and must reach the target
    build(source, "generic", Settings(db_path=root, train_ranker=False, ann_exact_max_rows=0))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("int8_above", [CONTENT_INT8_ABOVE, 0], ids=["float32", "int8"])
def test_ann_recall_at_1000_reaches_095(indexed_catalog: Path, int8_above: int) -> None:
    """Against exact search over the float32 vectors, with the content vectors served as they
    are (float32, mapped) and as int8 codes (catalogs over SHORTLIST_CONTENT_INT8_ABOVE)."""
    manifest = CatalogRoot(indexed_catalog).open().manifest
    for choice in manifest.indexes.values():
        assert choice.kind != "exact"
        assert choice.k == K

    async def measure() -> dict[str, float]:
        runtime = await Runtime.open(indexed_catalog, content_int8_above=int8_above)
        content = np.load(runtime.path / CONTENT_FILE)
        assert isinstance(runtime.items.content, QuantizedRows) == (int8_above == 0)
        rng = np.random.default_rng(0)
        users = rng.choice(len(runtime.users), size=60, replace=False)
        recall = {}
        for index, items, queries in (
            (runtime.cf_index, runtime.items.cf[:], runtime.users.cf[users]),
            (runtime.content_index, content, runtime.users.content[users]),
        ):
            truth = exact_top_k(items, queries, K)
            found = [set((await index.nearest(q, K))[0].tolist()) for q in queries]
            recall[index.column] = float(
                np.mean([len(f & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)])
            )
        return recall

    recall = asyncio.run(measure())
    assert recall["cf_vector"] >= 0.95, recall
    assert recall["content_vector"] >= 0.95, recall
