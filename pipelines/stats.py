"""Item and user statistics the later stages read: popularity (raw and time-decayed), first-seen
dates, ratings, per-user activity, genre distribution, recent and dismissed items, and the
user's content profile (recency-weighted mean of the content vectors of items they endorsed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import rankdata

from app.mapped_rows import rows_between

DAY = 86_400.0
TOP_GENRES = 5
PROFILE_BLOCK_ROWS = 262_144  # content rows read at once for the profiles: 384 MB of float32


@dataclass
class ItemStats:
    n_events: np.ndarray
    n_users: np.ndarray
    mean_rating: np.ndarray  # NaN where never rated
    popularity: np.ndarray  # summed endorsement weight
    popularity_decayed: np.ndarray  # same, each event halved every half-life before reference_time
    popularity_pct: np.ndarray  # percentile rank of popularity_decayed in [0, 1]
    first_seen: np.ndarray  # unix seconds of the first event, -1 when none


def item_stats(
    events: pd.DataFrame,
    weights: np.ndarray,
    n_items: int,
    reference_time: int,
    half_life_days: float,
) -> ItemStats:
    item = events["item_index"].to_numpy()
    ts = events["timestamp"].to_numpy()
    n_events = np.bincount(item, minlength=n_items).astype(np.int64)
    pairs = np.unique(events["user_index"].to_numpy().astype(np.int64) * n_items + item)
    n_users = np.bincount(pairs % n_items, minlength=n_items).astype(np.int64)
    is_rating = (events["event"] == "rating").to_numpy() & events["value"].notna().to_numpy()
    rating_sum = np.bincount(
        item[is_rating], weights=events["value"].to_numpy()[is_rating], minlength=n_items
    )
    rating_n = np.bincount(item[is_rating], minlength=n_items)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_rating = np.where(rating_n > 0, rating_sum / np.maximum(rating_n, 1), np.nan)
    popularity = np.bincount(item, weights=weights, minlength=n_items)
    age_days = np.maximum(0.0, (reference_time - ts) / DAY)
    decay = np.power(0.5, age_days / half_life_days)
    popularity_decayed = np.bincount(item, weights=weights * decay, minlength=n_items)
    # Ties share the lowest rank: never-seen items all sit at 0, not spread by their position.
    ranks = rankdata(popularity_decayed, method="min") - 1
    pct = (ranks / max(1, n_items - 1)).astype(np.float32)
    first_seen = np.full(n_items, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_seen, item, ts)
    first_seen[first_seen == np.iinfo(np.int64).max] = -1
    return ItemStats(
        n_events=n_events,
        n_users=n_users,
        mean_rating=mean_rating.astype(np.float32),
        popularity=popularity.astype(np.float32),
        popularity_decayed=popularity_decayed.astype(np.float32),
        popularity_pct=pct,
        first_seen=first_seen,
    )


@dataclass
class UserStats:
    n_events: np.ndarray
    n_positive: np.ndarray
    first_seen: np.ndarray
    last_seen: np.ndarray
    active_days: np.ndarray
    top_genres: list[list[str]]
    genre_shares: list[list[float]]
    recent_items: list[list[str]]
    dismissed_items: list[list[str]]
    consumed: list[np.ndarray]  # item_index of every item the user interacted with, bar dismissals
    history_items: list[np.ndarray]  # endorsed item_index, newest first, at most `history`
    history_weights: list[np.ndarray]  # each one's summed endorsement weight
    content_profile: np.ndarray  # (n_users, dim), L2-normalised, zero rows when nothing endorsed


def endorsed_sum(
    endorse: sp.csr_matrix, vectors: np.ndarray, block: int = PROFILE_BLOCK_ROWS
) -> np.ndarray:
    """`endorse @ vectors` (users x items times items x dim) as float32, reading `vectors` a
    block of rows at a time, in order. At catalog scale the vectors are a mapped file larger
    than the page cache, and the product taken at once read a row for every endorsement at
    random: at 10M items, under the build's memory pressure, the full build's stats step took
    over 15 minutes reading the 15 GB file at 670 MB/s."""
    by_item = endorse.tocsc()
    out = np.zeros((endorse.shape[0], vectors.shape[1]), dtype=np.float32)
    for start in range(0, vectors.shape[0], block):
        stop = min(start + block, vectors.shape[0])
        part = by_item[:, start:stop]
        if part.nnz:
            out += np.asarray(part @ rows_between(vectors, start, stop), dtype=np.float32)
    return out


def user_stats(
    events: pd.DataFrame,
    weights: np.ndarray,
    item_ids: np.ndarray,
    item_genres: list[list[str]],
    content_vectors: np.ndarray,
    n_users: int,
    recent: int,
    profile_half_life_days: float,
    history: int = 500,
) -> UserStats:
    user = events["user_index"].to_numpy()
    item = events["item_index"].to_numpy()
    ts = events["timestamp"].to_numpy()
    positive = weights >= 1.0
    n_events = np.bincount(user, minlength=n_users).astype(np.int64)
    n_positive = np.bincount(user[positive], minlength=n_users).astype(np.int64)
    first_seen = np.full(n_users, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_seen, user, ts)
    last_seen = np.zeros(n_users, dtype=np.int64)
    np.maximum.at(last_seen, user, ts)
    day_keys = np.unique(user.astype(np.int64) * 1_000_000 + ts // int(DAY) % 1_000_000)
    active_days = np.bincount(day_keys // 1_000_000, minlength=n_users).astype(np.int32)

    # Recency weight of each endorsement relative to the user's own last event.
    age_days = (last_seen[user] - ts) / DAY
    recency = np.power(0.5, age_days / profile_half_life_days) * weights
    endorse = sp.csr_matrix(
        (recency[positive], (user[positive], item[positive])),
        shape=(n_users, len(item_ids)),
        dtype=np.float32,
    )
    endorse.sum_duplicates()
    profile = endorsed_sum(endorse, content_vectors)
    norms = np.linalg.norm(profile, axis=1, keepdims=True)
    profile = np.divide(profile, norms, out=np.zeros_like(profile), where=norms > 0)

    top_genres, genre_shares = _genre_distribution(endorse, item_genres, n_users)

    order = np.lexsort((-ts, user))  # each user's events, newest first
    sorted_users = user[order]
    starts = np.searchsorted(sorted_users, np.arange(n_users), side="left")
    ends = np.searchsorted(sorted_users, np.arange(n_users), side="right")
    recent_items: list[list[str]] = []
    dismissed_items: list[list[str]] = []
    consumed: list[np.ndarray] = []
    is_dismiss = (events["event"] == "dismiss").to_numpy()
    history_items: list[np.ndarray] = []
    history_weights: list[np.ndarray] = []
    sorted_items = item[order]
    sorted_dismiss = is_dismiss[order]
    sorted_weights = weights[order]
    for u in range(n_users):
        rows = sorted_items[starts[u] : ends[u]]
        _, first_idx = np.unique(rows, return_index=True)
        recent_items.append(item_ids[rows[np.sort(first_idx)][:recent]].tolist())
        dismissed = rows[sorted_dismiss[starts[u] : ends[u]]]
        dismissed_items.append(item_ids[np.unique(dismissed)].tolist())
        consumed.append(np.unique(rows[~sorted_dismiss[starts[u] : ends[u]]]).astype(np.int32))
        endorsed, summed = _endorsed(rows, sorted_weights[starts[u] : ends[u]], history)
        history_items.append(endorsed)
        history_weights.append(summed)
    return UserStats(
        n_events=n_events,
        n_positive=n_positive,
        first_seen=first_seen,
        last_seen=last_seen,
        active_days=active_days,
        top_genres=top_genres,
        genre_shares=genre_shares,
        recent_items=recent_items,
        dismissed_items=dismissed_items,
        consumed=consumed,
        history_items=history_items,
        history_weights=history_weights,
        content_profile=profile,
    )


def _endorsed(items: np.ndarray, weights: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Items with a positive summed weight, ordered by their newest event (items newest first)."""
    unique, first, inverse = np.unique(items, return_index=True, return_inverse=True)
    summed = np.bincount(inverse, weights=weights, minlength=len(unique))
    order = np.argsort(first, kind="stable")
    order = order[summed[order] > 0][:limit]
    return unique[order].astype(np.int32), summed[order].astype(np.float32)


def _genre_distribution(
    endorse: sp.csr_matrix, item_genres: list[list[str]], n_users: int
) -> tuple[list[list[str]], list[list[float]]]:
    vocabulary = sorted({g for genres in item_genres for g in genres})
    if not vocabulary:
        return [[] for _ in range(n_users)], [[] for _ in range(n_users)]
    column = {g: i for i, g in enumerate(vocabulary)}
    rows = [i for i, genres in enumerate(item_genres) for _ in genres]
    cols = [column[g] for genres in item_genres for g in genres]
    item_genre = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)),
        shape=(len(item_genres), len(vocabulary)),
    )
    mass = np.asarray((endorse @ item_genre).todense(), dtype=np.float32)
    totals = mass.sum(axis=1, keepdims=True)
    shares = np.divide(mass, totals, out=np.zeros_like(mass), where=totals > 0)
    k = min(TOP_GENRES, len(vocabulary))
    top = np.argsort(-shares, axis=1, kind="stable")[:, :k]
    names = np.array(vocabulary, dtype=object)
    top_genres: list[list[str]] = []
    genre_shares: list[list[float]] = []
    for u in range(n_users):
        picked = top[u][shares[u, top[u]] > 0]
        top_genres.append(names[picked].tolist())
        genre_shares.append([round(float(s), 4) for s in shares[u, picked]])
    return top_genres, genre_shares
