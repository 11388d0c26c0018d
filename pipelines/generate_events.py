"""The events of the synthetic catalog's users (see `pipelines.generate` for the model).

`activity` draws how many events each user has, `user_chunks` groups users so that one chunk's
candidates fit in memory, and `events_table` draws a chunk's events over a `LatentCatalog`:
taste mixtures, sessions, the choice among popular candidates, series watched in order and the
reaction to each item.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from app.events import EVENT_TYPES
from pipelines.generate_items import LATENT_DIM, LatentCatalog, numbered_ids, unit
from pipelines.lexicon import GENRE_SHARE, GENRES

EVENT_CHUNK = 200_000  # events drawn at once: candidates take EVENT_CHUNK * 16 * 64 bytes
EVENT_DAYS = 730
ZIPF_EXPONENT = 0.95
CANDIDATES = 16
GENRE_CANDIDATES = 10  # of CANDIDATES, drawn from the taste component's genre
SHARPNESS = 6.0
EXPLORE_RATE = 0.06
MEAN_EVENTS = 100
DEVICES = ("tv", "mobile", "web", "tablet")
_DEVICE_SHARE = np.array([0.35, 0.35, 0.2, 0.1])
_HOUR_WEIGHTS = np.array(
    [3, 2, 1, 1, 1, 1, 2, 4, 5, 4, 4, 5, 6, 5, 5, 5, 6, 8, 10, 13, 15, 14, 10, 6], dtype=float
)
_REACTIONS = ("dismiss", "purchase", "rating", "click", "view")  # in the order _reactions draws

EVENTS_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("timestamp", pa.int64()),
        ("event", pa.string()),
        ("value", pa.float64()),
        ("device", pa.string()),
    ]
)


def activity(users: int, rng: np.random.Generator) -> np.ndarray:
    """Events per user: at least 5, heavy-tailed, about MEAN_EVENTS on average."""
    sigma = 1.1
    mu = np.log(MEAN_EVENTS - 5) - sigma**2 / 2
    return 5 + np.minimum(rng.lognormal(mu, sigma, users), 50 * MEAN_EVENTS).astype(np.int64)


def user_chunks(counts: np.ndarray) -> list[tuple[int, int]]:
    """Runs of users (lo, hi), each with about EVENT_CHUNK events, to draw at once."""
    ends = np.searchsorted(np.cumsum(counts), np.arange(EVENT_CHUNK, counts.sum(), EVENT_CHUNK))
    cuts = np.unique(np.concatenate([[0], ends + 1, [len(counts)]]).clip(0, len(counts)))
    return list(zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True))


def events_table(
    cat: LatentCatalog,
    item_ids: pa.Array,
    counts: np.ndarray,
    lo: int,
    hi: int,
    ref_day: int,
    centroids: np.ndarray,
    rng: np.random.Generator,
) -> pa.Table:
    """The events of users lo..hi, sorted by user and time."""
    n, nu = counts[lo:hi], hi - lo
    e, ref_ts = int(n.sum()), ref_day * 86400
    taste_genre = rng.choice(len(GENRES), size=(nu, 3), p=GENRE_SHARE)
    taste_noise = rng.standard_normal((nu, 3, LATENT_DIM)) / np.sqrt(LATENT_DIM)
    taste = unit(centroids[taste_genre] + 0.5 * taste_noise).astype(np.float32)
    components = rng.choice(3, nu, p=[0.35, 0.4, 0.25]) + 1
    mix = rng.dirichlet(np.ones(3), size=nu) * (np.arange(3) < components[:, None])
    mix_cdf = np.cumsum(mix / mix.sum(1, keepdims=True), axis=1)
    prefer = rng.choice(len(DEVICES), size=nu, p=_DEVICE_SHARE)
    span = 14 + (EVENT_DAYS - 14) * rng.random(nu) ** 0.7
    per_session = 1.0 + rng.exponential(5.0, nu)

    # Sessions: each user's events split into consecutive runs, each on one day and device.
    user = np.repeat(np.arange(nu), n)
    j = np.arange(e) - (np.cumsum(n) - n)[user]
    sessions = np.minimum(n, np.ceil(n / per_session).astype(np.int64)).clip(1)
    session = (np.cumsum(sessions) - sessions)[user] + j * sessions[user] // n[user]
    owner = np.repeat(np.arange(nu), sessions)
    day = ref_day - 1 - (rng.random(len(owner)) * span[owner]).astype(np.int64)
    hour = rng.choice(24, size=len(owner), p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum())
    start = day * 86400 + hour * 3600 + rng.integers(0, 3600, len(owner))
    device = np.where(
        rng.random(len(owner)) < 0.8,
        prefer[owner],
        rng.choice(len(DEVICES), size=len(owner), p=_DEVICE_SHARE),
    )
    elapsed = np.cumsum(20 + rng.exponential(240.0, e).astype(np.int64))
    opens = np.flatnonzero(np.r_[True, session[1:] != session[:-1]])
    ts = np.minimum(start[session] + elapsed - elapsed[opens][session], ref_ts - 1)

    # Candidates by popularity, part from the genre of the event's taste component.
    comp = (rng.random(e)[:, None] > mix_cdf[user, :2]).sum(1)
    genre = taste_genre[user, comp]
    aim = taste[user, comp]
    cand = cat.by_rank[_zipf_rank(rng.random((e, CANDIDATES)), len(cat.by_rank))]
    first = cat.pool_start[genre][:, None]
    size = cat.pool_start[genre + 1][:, None] - first
    local = _zipf_rank(rng.random((e, GENRE_CANDIDATES)), size)
    pooled = cat.pool[np.minimum(first + local, len(cat.pool) - 1)]
    cand[:, :GENRE_CANDIDATES] = np.where(size > 0, pooled, cand[:, :GENRE_CANDIDATES])
    score = np.einsum("ekd,ed->ek", cat.latent[cand], aim)
    noise = rng.gumbel(size=(e, CANDIDATES))
    explore = rng.random(e) < EXPLORE_RATE
    key = np.where(explore[:, None], noise, SHARPNESS * score + noise)
    key[explore, :GENRE_CANDIDATES] = -np.inf
    key[cat.released[cand] * 86400 > ts[:, None]] = -np.inf
    pick = key.argmax(1)
    rows = np.arange(e)
    item = cand[rows, pick]
    stuck = np.flatnonzero(np.isneginf(key[rows, pick]))
    for _ in range(2):  # most repeats of a (user, item) pair go to the next best candidate
        repeat = np.ones(e, dtype=bool)
        repeat[np.unique(user * len(cat.by_rank) + item, return_index=True)[1]] = False
        redo = np.flatnonzero(repeat & (rng.random(e) < 0.8))
        key[redo, pick[redo]] = -np.inf
        pick[redo] = key[redo].argmax(1)
        moved = redo[np.isfinite(key[redo, pick[redo]])]
        item[moved] = cand[moved, pick[moved]]
    if len(stuck):  # no candidate could be taken then: the oldest one, after its release
        item[stuck] = cand[stuck, cat.released[cand[stuck]].argmin(1)]
        out = cat.released[item[stuck]] * 86400
        later = out + (rng.random(len(stuck)) * (ref_ts - out)).astype(np.int64)
        ts[stuck] = np.where(out <= ts[stuck], ts[stuck], later)

    item = _series_in_order(cat, user, item, ts, rng)
    match = np.einsum("ed,ed->e", cat.latent[item], aim)
    kind, value = _reactions(match, rng)

    order = np.lexsort((ts, user))
    user_ids = numbered_ids("u", lo, hi, len(counts)).take(user[order])
    values = value[order]
    return pa.Table.from_arrays(
        [
            user_ids,
            item_ids.take(item[order]),
            pa.array(ts[order]),
            pa.array(EVENT_TYPES).take(kind[order]),
            pa.array(values, mask=np.isnan(values)),
            pa.array(DEVICES).take(device[session][order]),
        ],
        schema=EVENTS_SCHEMA,
    )


def _series_in_order(
    cat: LatentCatalog, user: np.ndarray, item: np.ndarray, ts: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Most users watch a series from its first entry on: their k-th event in it becomes entry k.

    An entry not yet released at that time keeps the item drawn for the event.
    """
    hit = np.flatnonzero(cat.series[item] >= 0)
    if not len(hit):
        return item
    sid = cat.series[item[hit]].astype(np.int64)
    order = hit[np.lexsort((ts[hit], sid, user[hit]))]
    sid = cat.series[item[order]].astype(np.int64)
    group = user[order].astype(np.int64) * (len(cat.series_start)) + sid
    opens = np.r_[True, group[1:] != group[:-1]]
    gid = np.cumsum(opens) - 1
    k = np.arange(len(order)) - np.flatnonzero(opens)[gid]
    length = cat.series_start[sid + 1] - cat.series_start[sid]
    entry = cat.members[cat.series_start[sid] + np.minimum(k, length - 1)]
    follows = (rng.random(int(opens.sum())) < 0.85)[gid]
    fine = follows & (cat.released[entry] * 86400 <= ts[order])
    item = item.copy()
    item[order[fine]] = entry[fine]
    return item


def _reactions(match: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Event type (index into EVENT_TYPES) and rating value from how well the item matches."""
    p_dismiss = 0.55 / (1.0 + np.exp((match - 0.15) / 0.08))
    p_purchase = 0.015 + 0.05 * np.clip(match, 0.0, 1.0)
    p_rating = np.full(len(match), 0.10)
    p_click = np.full(len(match), 0.27)
    cdf = np.cumsum(np.stack([p_dismiss, p_purchase, p_rating, p_click]), axis=0)
    u = rng.random(len(match))
    step = (u[None, :] >= cdf).sum(0)
    kind = np.array([EVENT_TYPES.index(k) for k in _REACTIONS])[step]
    rating = EVENT_TYPES.index("rating")
    stars = np.round(2.0 * (1.2 + 4.0 * match + rng.normal(0.0, 0.5, len(match)))) / 2.0
    value = np.where(kind == rating, np.clip(stars, 0.5, 5.0), np.nan)
    return kind, value


def _zipf_rank(u: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    """0-based ranks with P(r) ~ (r + 1) ** -ZIPF_EXPONENT among n, by the inverse CDF."""
    e = 1.0 - ZIPF_EXPONENT
    x = (1.0 + u * ((np.asarray(n, dtype=np.float64) + 1.0) ** e - 1.0)) ** (1.0 / e)
    return np.minimum(x.astype(np.int64) - 1, np.asarray(n) - 1).clip(0)
