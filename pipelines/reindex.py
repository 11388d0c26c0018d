"""`shortlist reindex`: choose a built version's ANN indexes again, without rebuilding it.

The index choice (`pipelines.index.choose_index`) is measured against exact search on user
vectors, as in the build; the new choice replaces the manifest's, and a running server picks it
up on `reloadModels` or SIGHUP. Used when the index policy changed after a long build.
"""

from __future__ import annotations

import numpy as np

from app.settings import Settings
from app.store import ITEMS, USERS, CatalogRoot, IndexChoice, write_manifest
from pipelines.bench_ann import column_in_order, served_vectors
from pipelines.index import choose_index, probe_queries
from pipelines.steps import Reporter

COLUMNS = ("cf_vector", "content_vector")


def reindex(settings: Settings, reporter: Reporter | None = None) -> dict[str, IndexChoice]:
    """Re-run the index choice for both vector columns of the serving version."""
    reporter = reporter or Reporter(quiet=True)
    version = CatalogRoot(settings.db_path).open()
    items, users = version.table(ITEMS), version.table(USERS)
    rng = np.random.default_rng(settings.seed)
    chosen: dict[str, IndexChoice] = {}
    for column in COLUMNS:
        with reporter.step(f"index {column}") as step:
            # content vectors stay mapped (rows upserted since the build: read into memory)
            vectors = np.asarray(served_vectors(version, items, column))
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
