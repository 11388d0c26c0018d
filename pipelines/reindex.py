"""`shortlist reindex`: choose a built version's ANN indexes again, without rebuilding it.

The index choice (`pipelines.index.choose_index`) is measured against exact search on user
vectors, as in the build; the new choice replaces the manifest's, and a running server picks it
up on `reloadModels` or SIGHUP. Used when the index policy changed after a long build.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.settings import Settings
from app.store import ITEMS, USERS, CatalogRoot, IndexChoice, write_manifest
from pipelines.bench_ann import _matrix
from pipelines.index import choose_index, probe_queries
from pipelines.steps import Reporter

COLUMNS = ("cf_vector", "content_vector")


def column_in_order(table: Any, column: str) -> np.ndarray:
    """A vector column as an (n, d) array in item_index (or user_index) order."""
    key = "item_index" if "item_index" in table.schema.names else "user_index"
    ids, parts = [], []
    for batch in table.search().select([key, column]).limit(None).to_batches(100_000):
        ids.append(batch.column(key).to_numpy())
        parts.append(_matrix(batch.column(column)))
    order = np.argsort(np.concatenate(ids), kind="stable")
    return np.concatenate(parts)[order]


def reindex(settings: Settings, reporter: Reporter | None = None) -> dict[str, IndexChoice]:
    """Re-run the index choice for both vector columns of the serving version."""
    reporter = reporter or Reporter(quiet=True)
    version = CatalogRoot(settings.db_path).open()
    items, users = version.table(ITEMS), version.table(USERS)
    rng = np.random.default_rng(settings.seed)
    chosen: dict[str, IndexChoice] = {}
    for column in COLUMNS:
        with reporter.step(f"index {column}") as step:
            vectors = column_in_order(items, column)
            user_vectors = column_in_order(users, column)
            queries = probe_queries(user_vectors, vectors, settings.ann_probe_queries, rng)
            choice = choose_index(
                items,
                column,
                vectors,
                queries,
                k=settings.ann_k,
                recall_target=settings.ann_recall_target,
                exact_max_rows=settings.ann_exact_max_rows,
                step=step,
                directory=version.path,
                seed=settings.seed,
            )
            step.note = f"{choice.kind} recall@{choice.k}={choice.recall_at_k:.3f} "
            step.note += f"p50={choice.p50_ms:.1f}ms"
            chosen[column] = choice
    manifest = version.manifest
    manifest.indexes = {**manifest.indexes, **chosen}
    write_manifest(version.path, manifest)
    return chosen
