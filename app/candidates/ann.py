"""Nearest-neighbour search in LanceDB with the search parameters the build measured."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from app.candidates.base import SourceConfig, SourceInput, SourceResult, keep_allowed
from app.candidates.memory_search import InMemorySearch, NormOrderedSearch
from app.candidates.partitioned_search import PartitionedSearch, Partitions
from app.deadlines import Fault, inject
from app.domain import UserState
from app.mapped_rows import VectorRows

METRIC = "dot"
# Test-only fault injection (SHORTLIST_FAULTS): every ANN search of a column is one store call.
FAULT_POINTS = ("ann:cf_vector", "ann:content_vector")


@dataclass
class VectorIndex:
    """One vector column of the items table and how to search it (from the manifest)."""

    table: Any  # lancedb AsyncTable
    column: str
    search: dict[str, int]
    measured_k: int = 1000  # the k the build measured `search` at
    faults: Mapping[str, Fault] = field(default_factory=dict)  # test only: ann:<column>
    memory: InMemorySearch | None = None  # in memory, if the build chose
    partitions: Partitions | None = None  # what a partitioned search was built from

    async def nearest(
        self,
        vector: np.ndarray,
        k: int,
        where: str | None = None,
        allows: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """item_index and dot-product score of the k nearest items, best first.

        `where` filters the LanceDB search; `allows` is the same filter over item_index arrays
        (`ItemGate.allows`), which an in-memory search applies while it scans.
        """
        await inject(f"ann:{self.column}", self.faults)
        if self.memory is not None and (where is None or allows is not None):
            items, scores, _ = self.memory.nearest(vector, k, allows if where else None)
            return items, scores
        query = (
            self.table.query()
            .nearest_to(np.asarray(vector, dtype=np.float32))
            .column(self.column)
            .distance_type(METRIC)
            .limit(k)
        )
        if self.search.get("exact"):
            query = query.bypass_vector_index()
        if "nprobes" in self.search:
            query = query.nprobes(self.search["nprobes"])
        if "refine_factor" in self.search:
            query = query.refine_factor(self.search["refine_factor"])
        if "ef" in self.search:
            # HNSW's ef was measured for measured_k results; keep its ratio for smaller k.
            ratio = self.search["ef"] / max(1, self.measured_k)
            query = query.ef(max(k, int(ratio * k) + 10))
        if where:
            query = query.where(where)
        result = await query.select(["item_index", "_distance"]).to_arrow()
        items = result["item_index"].to_numpy().astype(np.int64)
        # LanceDB's "dot" distance is 1 - dot product.
        scores = 1.0 - result["_distance"].to_numpy().astype(np.float32)
        return items, scores


def memory_search(
    vectors: VectorRows,
    search: dict[str, int],
    partitions: Partitions | None = None,
    previous: InMemorySearch | None = None,
) -> InMemorySearch | None:
    """The in-memory search the manifest asks for: partitioned (given its partitions), exact
    ({"memory": 1}), or none (LanceDB). `previous`: the search of the same column it replaces
    (items upserted), whose unchanged work a partitioned search reuses."""
    if partitions is not None:
        before = previous if isinstance(previous, PartitionedSearch) else None
        return PartitionedSearch(
            vectors, partitions, search["nprobes"], search.get("refine", 2), before
        )
    if not search.get("memory"):
        return None
    return NormOrderedSearch(vectors, search.get("max_rows"))


class ProfileSearch:
    """A source that searches one vector column with one of the user's vectors.

    Consumed and excluded items are filtered after the search, so it asks for up to twice its
    limit when the user has that many blocked items.
    """

    name: ClassVar[str]
    missing: ClassVar[str]  # why the source skips a user without the vector

    def __init__(self, config: SourceConfig, index: VectorIndex) -> None:
        self.config = config
        self.index = index

    def vector(self, user: UserState) -> np.ndarray | None:
        raise NotImplementedError

    async def __call__(self, given: SourceInput) -> SourceResult:
        vector = self.vector(given.user)
        if vector is None:
            return SourceResult.skip(self.missing)
        k = self.config.limit + min(len(given.gate.blocked), self.config.limit)
        items, scores = await self.index.nearest(vector, k, given.gate.sql, given.gate.allows)
        return keep_allowed(SourceResult(items, scores), given.gate, self.config.limit)
