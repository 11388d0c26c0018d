"""The items of the synthetic catalog (see `pipelines.generate` for the model).

`draw_items` draws the latent side of a whole catalog at once (genres, release days, series,
latent vectors, popularity ranks, title words); `items_table` renders a slice of it as rows of
`ITEMS_SCHEMA` and `content_vectors` gives the matching embeddings. The words come from
`pipelines.lexicon`; every function takes the `numpy.random.Generator` to draw from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.lexicon import (
    GENRE_FAMILY,
    GENRE_SHARE,
    GENRE_WORDS,
    GENRES,
    OF_PLACES,
    ORDINALS,
    ROMAN_NUMERALS,
    SERIES_HEADS,
    SERIES_NOUNS,
    SERIES_TAILS,
    TITLE_NOUNS,
    title_vocabulary,
)

LATENT_DIM = 16
VECTOR_DIM = 384
RELEASE_DAYS = 15 * 365
NEW_RELEASE_DAYS = 60
NEW_RELEASE_SHARE = 0.04
SERIES_SHARE = 0.10
_SERIES_SIZES = np.array([0.3, 0.25, 0.15, 0.1, 0.08, 0.06, 0.06])  # sizes 2..8

ITEMS_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("title", pa.string()),
        ("description", pa.string()),
        ("genres", pa.string()),
        ("series", pa.string()),
        ("released", pa.string()),
    ]
)
VECTOR_FIELD = pa.field("content_vector", pa.list_(pa.float32(), VECTOR_DIM))


@dataclass
class LatentCatalog:
    """The latent side of the catalog: everything events need, indexed by item number."""

    genres: np.ndarray  # (n, 3) int8, -1 where absent
    latent: np.ndarray  # (n, LATENT_DIM) float32, unit rows
    released: np.ndarray  # (n,) int64 days since the epoch
    by_rank: np.ndarray  # (n,) item numbers, most popular first
    pool: np.ndarray  # item numbers grouped by genre, each group most popular first
    pool_start: np.ndarray  # (len(GENRES) + 1,) offsets into pool
    series: np.ndarray  # (n,) int32 series number, -1 outside series
    position: np.ndarray  # (n,) int8 1-based place in its series, 0 outside series
    members: np.ndarray  # item numbers grouped by series, in order
    series_start: np.ndarray  # (n_series + 1,) offsets into members
    series_names: pa.Array
    title_words: np.ndarray  # (n, 6) int16 numbers into title_vocabulary(), -1 where absent


def genre_centroids(rng: np.random.Generator) -> np.ndarray:
    """Unit taste vectors, one per genre; a family's genres share part of theirs."""
    family = rng.standard_normal((GENRE_FAMILY.max() + 1, LATENT_DIM))
    own = rng.standard_normal((len(GENRES), LATENT_DIM))
    return unit(0.6 * unit(family[GENRE_FAMILY]) + 0.8 * unit(own))


def unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def _draw_genres(rng: np.random.Generator, n: int) -> np.ndarray:
    """1-3 distinct genres per item; the first by share, others favour the first's family."""
    g = np.full((n, 3), -1, dtype=np.int8)
    g[:, 0] = rng.choice(len(GENRES), size=n, p=GENRE_SHARE)
    affinity = GENRE_SHARE[None, :] * np.where(
        GENRE_FAMILY[:, None] == GENRE_FAMILY[None, :], 4.0, 1.0
    )
    np.fill_diagonal(affinity, 0.0)
    cdf = np.cumsum(affinity / affinity.sum(1, keepdims=True), axis=1)
    cdf[:, -1] = 1.0
    flat = (cdf + np.arange(len(GENRES))[:, None]).ravel()
    how_many = rng.choice(3, size=n, p=[0.35, 0.45, 0.2]) + 1
    for slot in (1, 2):
        row = g[:, 0].astype(np.int64)
        pick = np.searchsorted(flat, row + rng.random(n), side="right") - row * len(GENRES)
        pick = np.minimum(pick, len(GENRES) - 1)
        keep = (how_many > slot) & (pick != g[:, 1])
        g[:, slot] = np.where(keep, pick, -1)
    return g


def draw_items(
    n: int, rng: np.random.Generator, ref_day: int, centroids: np.ndarray
) -> LatentCatalog:
    """n items released before `ref_day`: genres, series, latent vectors, popularity, titles."""
    genres = _draw_genres(rng, n)
    recent = rng.random(n) < NEW_RELEASE_SHARE
    age = np.where(
        recent,
        rng.integers(1, NEW_RELEASE_DAYS + 1, n),
        NEW_RELEASE_DAYS + (rng.beta(1.0, 1.5, n) * (RELEASE_DAYS - NEW_RELEASE_DAYS)).astype(int),
    )
    released = ref_day - age.astype(np.int64)

    # Series: random members, grouped; all share the head's genres and release in order.
    sizes = rng.choice(len(_SERIES_SIZES), size=max(1, n // 20), p=_SERIES_SIZES) + 2
    sizes = sizes[np.cumsum(sizes) <= SERIES_SHARE * n]
    sid_of_member = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
    members = rng.permutation(n)[: len(sid_of_member)]
    series_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    genres[members] = genres[members[series_start[:-1]]][sid_of_member]
    order = np.lexsort((released[members], sid_of_member))
    members = members[order]
    pos0 = np.arange(len(members)) - series_start[sid_of_member]
    base = sid_of_member.astype(np.int64) * (RELEASE_DAYS * 4)
    strict = np.maximum.accumulate(released[members] - pos0 + base) + pos0 - base
    released[members] = np.minimum(strict, ref_day - 1)
    series = np.full(n, -1, dtype=np.int32)
    series[members] = sid_of_member
    position = np.zeros(n, dtype=np.int8)
    position[members] = pos0 + 1

    weights = np.where(genres >= 0, np.array([1.0, 0.6, 0.4]), 0.0)
    latent = np.zeros((n, LATENT_DIM))
    for slot in range(3):
        latent += weights[:, slot, None] * centroids[genres[:, slot].clip(0)]
    latent += 0.6 * rng.standard_normal((n, LATENT_DIM)) / np.sqrt(LATENT_DIM)
    heads = members[series_start[:-1]][sid_of_member]
    latent[members] = latent[heads] + 0.15 * rng.standard_normal((len(members), LATENT_DIM))
    latent = unit(latent).astype(np.float32)

    # Popularity is by rank; new releases and some series rank higher.
    buzz = rng.standard_normal(n) + 1.5 * (ref_day - released < 90)
    buzz[members] += rng.standard_normal(len(sizes))[sid_of_member]
    by_rank = np.argsort(-buzz, kind="stable").astype(np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[by_rank] = np.arange(n)
    item_of, slot_of = np.nonzero(genres >= 0)
    genre_of = genres[item_of, slot_of].astype(np.int64)
    pool = item_of[np.lexsort((rank[item_of], genre_of))].astype(np.int64)
    pool_start = np.concatenate([[0], np.cumsum(np.bincount(genre_of, minlength=len(GENRES)))])

    names = _series_names(rng, len(sizes))
    return LatentCatalog(
        genres,
        latent,
        released,
        by_rank,
        pool,
        pool_start,
        series,
        position,
        members.astype(np.int64),
        series_start,
        names,
        _draw_titles(rng, genres[:, 0]),
    )


def _draw_titles(rng: np.random.Generator, first_genre: np.ndarray) -> np.ndarray:
    """Word numbers per title part; a title that repeats an earlier one gets a subtitle."""
    n = len(first_genre)
    per = len(GENRE_WORDS["nouns"]) // len(GENRES)
    sizes = [len(words) for words in title_vocabulary()]
    parts = np.full((n, 6), -1, dtype=np.int64)
    parts[:, 0] = np.where(rng.random(n) < 0.35, 0, -1)
    parts[:, 1] = rng.integers(0, sizes[1], n)
    own = len(TITLE_NOUNS) + first_genre.astype(np.int64) * per + rng.integers(0, per, n)
    parts[:, 2] = np.where(rng.random(n) < 0.5, own, rng.integers(0, len(TITLE_NOUNS), n))
    parts[:, 3] = np.where(rng.random(n) < 0.3, rng.integers(0, sizes[3], n), -1)
    code = np.zeros(n, dtype=np.int64)
    for i in range(4):
        code = code * (sizes[i] + 1) + parts[:, i] + 1
    repeat = np.ones(n, dtype=bool)
    repeat[np.unique(code, return_index=True)[1]] = False
    parts[repeat, 4] = rng.integers(0, sizes[4], int(repeat.sum()))
    parts[repeat, 5] = rng.integers(0, sizes[5], int(repeat.sum()))
    return parts.astype(np.int16)


def _series_names(rng: np.random.Generator, k: int) -> pa.Array:
    """Distinct names such as "Starfall Chronicles" or "Ironwatch Saga of the Deep"."""
    shape = (len(SERIES_HEADS), len(SERIES_TAILS), len(SERIES_NOUNS), len(OF_PLACES) + 1)
    space = int(np.prod(shape))
    code = rng.choice(space, size=k, replace=k > space)
    head, tail, noun, place = np.unravel_index(code, shape)
    compound = pc.binary_join_element_wise(
        pa.array(SERIES_HEADS).take(head), pa.array(SERIES_TAILS).take(tail), ""
    )
    places = pa.array([None, *(f"of {p}" for p in OF_PLACES)], pa.string()).take(place)
    return pc.binary_join_element_wise(
        compound, pa.array(SERIES_NOUNS).take(noun), places, " ", null_handling="skip"
    )


def numbered_ids(prefix: str, lo: int, hi: int, n: int) -> pa.Array:
    digits = pc.utf8_lpad(
        pa.array(np.arange(lo, hi)).cast(pa.string()), width=len(str(n - 1)), padding="0"
    )
    return pc.binary_join_element_wise(prefix, digits, "")


def _pick(field: str, genre: np.ndarray, rng: np.random.Generator) -> pa.Array:
    words = GENRE_WORDS[field]
    per = len(words) // len(GENRES)
    return pa.array(words).take(genre.astype(np.int64) * per + rng.integers(0, per, len(genre)))


def items_table(
    cat: LatentCatalog, ids: pa.Array, lo: int, hi: int, rng: np.random.Generator
) -> pa.Table:
    n = hi - lo
    genres = cat.genres[lo:hi].astype(np.int64)
    first = genres[:, 0]
    second = np.where(genres[:, 1] >= 0, genres[:, 1], first)
    third = np.where(genres[:, 2] >= 0, genres[:, 2], second)
    names = pa.array(GENRES)
    genre_text = pc.binary_join_element_wise(
        *(names.take(pa.array(genres[:, s], mask=genres[:, s] < 0)) for s in range(3)),
        "|",
        null_handling="skip",
    )

    sid = cat.series[lo:hi]
    in_series = sid >= 0
    series = cat.series_names.take(pa.array(sid.clip(0), mask=~in_series))
    pos = cat.position[lo:hi].astype(np.int64)
    sequels = pa.array(
        ["" if k == 1 else f" {k}" for k in range(1, 9)]
        + ["" if k == 1 else f": Part {ROMAN_NUMERALS[k - 1]}" for k in range(1, 9)]
        + ["" if k == 1 else f" {ROMAN_NUMERALS[k - 1]}" for k in range(1, 9)]
    )
    style = rng.integers(0, 3, n)
    series_title = pc.binary_join_element_wise(
        series, sequels.take(style * 8 + (pos - 1).clip(0)), ""
    )

    parts = cat.title_words[lo:hi].astype(np.int64)
    word = [
        pa.array(words).take(pa.array(parts[:, i], mask=parts[:, i] < 0))
        for i, words in enumerate(title_vocabulary())
    ]
    plain_title = pc.binary_join_element_wise(
        pc.binary_join_element_wise(*word[:4], " ", null_handling="skip"),
        pc.binary_join_element_wise(word[4], word[5], " "),
        ": ",
        null_handling="skip",
    )
    title = pc.if_else(pa.array(in_series), series_title, plain_title)

    mood = _pick("moods", first, rng)
    article = pc.if_else(pc.match_substring_regex(mood, "^[aeiouAEIOU]"), "An", "A")
    sentence = pc.binary_join_element_wise(
        article,
        mood,
        _pick("label", first, rng),
        "about",
        _pick("people", first, rng),
        "who",
        _pick("plots", second, rng),
        _pick("places", third, rng),
        " ",
    )
    themes = pc.binary_join_element_wise(
        "Expect", _pick("themes", second, rng), "and", _pick("themes", third, rng), " "
    )
    chapter = pc.binary_join_element_wise(
        "The",
        pa.array(ORDINALS).take(pos.clip(1) - 1),
        "chapter of the",
        series,
        "series.",
        " ",
    )
    description = pc.binary_join_element_wise(
        pc.binary_join_element_wise(sentence, ".", ""),
        pc.if_else(
            pa.array((genres[:, 1] >= 0) | (rng.random(n) < 0.4)),
            pc.binary_join_element_wise(themes, ".", ""),
            None,
        ),
        pc.if_else(pa.array(in_series), chapter, None),
        " ",
        null_handling="skip",
    )
    released = pa.array(cat.released[lo:hi].astype(np.int32), pa.date32()).cast(pa.string())
    return pa.Table.from_arrays(
        [ids, title, description, genre_text, series, released], schema=ITEMS_SCHEMA
    )


def content_vectors(
    latent: np.ndarray, projection: np.ndarray, rng: np.random.Generator
) -> pa.Array:
    noise = rng.standard_normal((len(latent), VECTOR_DIM))
    vectors = unit(unit(latent @ projection) + 0.5 * unit(noise)).astype(np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), VECTOR_DIM)
