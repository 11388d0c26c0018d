"""Offline ranking and beyond-accuracy metrics for top-k recommendation lists.

Accuracy metrics score one user's list against that user's held-out relevant items; `mean_at_k`
averages them over the users who have any relevant item (a user with nothing held out cannot
tell a good list from a bad one). Gains are binary and an item counts once, however often a
list repeats it. Each accuracy metric is normalised by min(k, |relevant|), the most hits a list
of k could hold, so a perfect list scores 1 even when a user has more relevant items than k.

Item ids can be anything hashable (catalog ids, matrix indices); `NO_ITEM` (-1) marks an empty
slot - a baseline pads with it when a user has fewer unseen items than requested - and is
never counted as an item.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import TypeAlias

import numpy as np
import scipy.sparse as sp

NO_ITEM = -1

Items: TypeAlias = Sequence[Hashable] | np.ndarray
AtK: TypeAlias = Callable[[Items, AbstractSet[Hashable], int], float]


def _first_k(recommended: Items, k: int) -> list[Hashable]:
    """The first k slots, each item at its first position only, padding removed."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    head = recommended[:k]
    items = head.tolist() if isinstance(head, np.ndarray) else list(head)
    seen: set[Hashable] = set()
    out: list[Hashable] = []
    for item in items:
        if item in seen or item == NO_ITEM:
            out.append(NO_ITEM)  # keeps positions: a repeat takes a slot but gains nothing
            continue
        seen.add(item)
        out.append(item)
    return out


def _hits(recommended: Items, relevant: AbstractSet[Hashable], k: int) -> np.ndarray:
    return np.array(
        [item != NO_ITEM and item in relevant for item in _first_k(recommended, k)], dtype=bool
    )


def ndcg_at_k(recommended: Items, relevant: AbstractSet[Hashable], k: int = 10) -> float:
    """Binary-gain NDCG@k: DCG = sum of 1/log2(rank + 1) over relevant items in the top k,
    divided by the DCG of min(k, |relevant|) hits at the top. 0 when nothing is relevant."""
    hits = _hits(recommended, relevant, k)
    if not relevant or not hits.any():
        return 0.0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = discounts[: min(k, len(relevant))].sum()
    return float(discounts[: len(hits)][hits].sum() / ideal)


def recall_at_k(recommended: Items, relevant: AbstractSet[Hashable], k: int = 10) -> float:
    """Hits in the top k divided by min(|relevant|, k), so a list of k can always reach 1.

    This is the "capped" recall (as in R-precision when |relevant| <= k); the textbook
    denominator |relevant| would bound a user with 50 relevant items at k/50.
    """
    if not relevant:
        return 0.0
    return float(_hits(recommended, relevant, k).sum() / min(len(relevant), k))


def average_precision_at_k(
    recommended: Items, relevant: AbstractSet[Hashable], k: int = 10
) -> float:
    """AP@k: precision at each hit's rank, summed over hits in the top k, divided by
    min(|relevant|, k). Its mean over users is MAP@k."""
    hits = _hits(recommended, relevant, k)
    if not relevant or not hits.any():
        return 0.0
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].sum() / min(len(relevant), k))


def mean_at_k(
    metric: AtK,
    recommendations: Sequence[Items] | np.ndarray,
    relevant: Sequence[AbstractSet[Hashable]],
    k: int = 10,
) -> float:
    """Mean of a per-user metric over users with at least one relevant item (0 if none has)."""
    if len(recommendations) != len(relevant):
        raise ValueError(
            f"{len(recommendations)} recommendation lists for {len(relevant)} relevant sets"
        )
    scores = [
        metric(rec, rel, k) for rec, rel in zip(recommendations, relevant, strict=True) if rel
    ]
    return float(np.mean(scores)) if scores else 0.0


def relevant_sets(held_out: sp.csr_matrix, users: np.ndarray) -> list[set[int]]:
    """Each user's held-out items: the columns with a positive entry in their row."""
    rows = _positive(held_out[np.asarray(users)])
    return [
        set(rows.indices[rows.indptr[r] : rows.indptr[r + 1]].tolist()) for r in range(len(users))
    ]


def catalog_coverage(lists: Iterable[Items], n_items: int) -> float:
    """Share of the catalog's n_items that appear in at least one list."""
    if n_items < 1:
        raise ValueError(f"n_items must be at least 1, got {n_items}")
    distinct: set[Hashable] = set()
    for items in lists:
        distinct.update(items.tolist() if isinstance(items, np.ndarray) else items)
    distinct.discard(NO_ITEM)
    return len(distinct) / n_items


def intra_list_diversity(lists_of_vectors: Iterable[np.ndarray]) -> float:
    """Mean over lists of the mean pairwise cosine distance (1 - cosine) within a list.

    Each list is an (items, dim) array of its items' vectors. Lists of fewer than two items have
    no pairs and are skipped. A zero vector counts as orthogonal to everything. The range is
    [0, 2]; [0, 1] for non-negative vectors.
    """
    per_list: list[float] = []
    for vectors in lists_of_vectors:
        v = np.asarray(vectors, dtype=np.float64)
        if v.ndim != 2:
            raise ValueError(f"each list must be an (items, dim) array, got shape {v.shape}")
        n = len(v)
        if n < 2:
            continue
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        unit = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
        cosine = np.clip(unit @ unit.T, -1.0, 1.0)
        upper = np.triu_indices(n, k=1)
        per_list.append(float(np.mean(1.0 - cosine[upper])))
    return float(np.mean(per_list)) if per_list else 0.0


def _positive(matrix: sp.spmatrix) -> sp.csr_matrix:
    positive = sp.csr_matrix(matrix > 0)
    positive.sum_duplicates()
    positive.eliminate_zeros()
    return positive


def users_per_item(train: sp.spmatrix) -> np.ndarray:
    """Number of distinct users with a positive entry on each item."""
    return np.diff(_positive(train).tocsc().indptr)


def most_popular(train: sp.csr_matrix, share: float = 0.01) -> set[int]:
    """The top `share` of items (at least one) by number of distinct users in `train`."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    popularity = users_per_item(train)
    n_top = max(1, round(share * train.shape[1]))
    order = np.lexsort((np.arange(train.shape[1]), -popularity))  # ties: lower index first
    return set(order[:n_top].tolist())


def popularity_share(lists: Iterable[Items], top_items: AbstractSet[Hashable]) -> float:
    """Fraction of filled slots, over all lists, taken by `top_items` (e.g. `most_popular`)."""
    filled = taken = 0
    for items in lists:
        for item in items.tolist() if isinstance(items, np.ndarray) else items:
            if item == NO_ITEM:
                continue
            filled += 1
            taken += item in top_items
    return taken / filled if filled else 0.0
