"""MovieLens directories as distributed: the CSV layout (ml-latest, ml-25m, ml-32m), ml-100k, ml-1m.

Every rating becomes a "rating" event. Titles lose MovieLens' trailing-article form
("Matrix, The (1999)" -> "The Matrix (1999)"), items are released on January 1 of the year in the
title (ml-100k: its release date), and series are read from titles (see `series`). Tag rows of
tags.csv are not events: each item's most frequent tags become its `tags` text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from app.errors import InputError
from pipelines.ingest.files import csv_header, read_csv
from pipelines.ingest.raw import RawCatalog
from pipelines.ingest.series import detect_series
from pipelines.ingest.validate import (
    first_duplicate,
    make_events,
    make_items,
    parse_genres,
    parse_ids,
    parse_timestamps,
    parse_values,
    require_columns,
)

LAYOUTS = {
    "csv": ("ratings.csv", "movies.csv"),
    "ml-100k": ("u.data", "u.item"),
    "ml-1m": ("ratings.dat", "movies.dat"),
}
ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
]  # fmt: skip
NO_GENRES = {"(no genres listed)", "unknown"}
MAX_TAGS = 20

_ARTICLES = "The|A|An|Les|La|Il|Das|Der|Die|Le|L'|El|Los|Las"
_TRAILING_ARTICLE = re.compile(rf"^(?P<body>.+?), (?P<article>{_ARTICLES})(?P<rest>:\s.*)?$")
_TITLE_PARTS = re.compile(r"^(?P<main>.*?)(?P<groups>(?:\s*\([^()]*\))*)\s*$")
_TITLE_YEAR = re.compile(r"\((\d{4})(?:\s*[-–]\s*\d{0,4})?\s*\)\s*$")
_RATING_COLUMNS = ["userId", "movieId", "rating", "timestamp"]
_RATING_TYPES = {"rating": pa.float64(), "timestamp": pa.int64()}


@dataclass
class _Movies:
    ids: pa.ChunkedArray
    titles: list[str]
    genres: list[list[str]]
    released: np.ndarray  # datetime64[s] from the file itself, NaT where it has none
    tags: list[str]


def load_movielens(directory: Path, scratch: Path | None = None) -> RawCatalog:
    """`scratch` is unused: MovieLens gives no content vectors (see load_generic)."""
    layout = detect_layout(directory)
    ratings_file, movies_file = (directory / name for name in LAYOUTS[layout])
    if layout == "csv":
        movies = _movies_csv(movies_file, directory / "tags.csv")
        table = _ratings_table(ratings_file, header=True)
    elif layout == "ml-100k":
        movies = _movies_100k(movies_file, directory / "u.genre")
        table = _ratings_table(ratings_file, header=False, delimiter="\t")
    else:
        movies = _movies_1m(movies_file)
        tabbed = pa.py_buffer(ratings_file.read_bytes().replace(b"::", b"\t"))
        table = _ratings_table(ratings_file, header=False, delimiter="\t", source=tabbed)

    titles = [fix_title(t) for t in movies.titles]
    years = np.array([title_year(t) for t in movies.titles], dtype="datetime64[s]")
    released = np.where(np.isnat(movies.released), years, movies.released)
    series, positions = detect_series(titles, released, movies.genres)
    items = make_items(
        {
            "item_id": movies.ids.to_pandas(),
            "title": titles,
            "description": "",
            "genres": movies.genres,
            "tags": movies.tags,
            "series": series,
            "series_position": positions,
            "released": released,
        }
    )
    name = ratings_file.name
    events, unknown = make_events(
        user_id=parse_ids(table["userId"], name, "userId"),
        item_id=parse_ids(table["movieId"], name, "movieId"),
        timestamp=parse_timestamps(table["timestamp"], name, "timestamp"),
        event="rating",
        value=parse_values(table["rating"], name, "rating", required=True),
        device=None,
        known_items=items["item_id"],
    )
    return RawCatalog(items, events, None, unknown, str(directory), "movielens")


def detect_layout(directory: Path) -> str:
    for layout, files in LAYOUTS.items():
        if all((directory / name).is_file() for name in files):
            return layout
    expected = "; ".join(" + ".join(files) for files in LAYOUTS.values())
    raise InputError(f"not a MovieLens directory (expected {expected})", file=str(directory))


def fix_title(title: str) -> str:
    """Move MovieLens' trailing articles to the front, in the title and its a.k.a. parts."""
    parts = _TITLE_PARTS.match(title.strip())
    if parts is None:
        return title.strip()
    groups = re.sub(r"\(([^()]*)\)", lambda g: f"({_front_article(g[1])})", parts["groups"])
    return _front_article(parts["main"]) + groups


def _front_article(text: str) -> str:
    match = _TRAILING_ARTICLE.match(text)
    if match is None:
        return text
    article, rest = match["article"], match["rest"] or ""
    space = "" if article.endswith("'") else " "
    return f"{article}{space}{match['body']}{rest}"


def title_year(title: str) -> np.datetime64:
    """January 1 of the year in a title's trailing parentheses, NaT when it has none."""
    match = _TITLE_YEAR.search(title)
    return np.datetime64(f"{match[1]}-01-01", "s") if match else np.datetime64("NaT", "s")


def _ratings_table(
    path: Path, *, header: bool, delimiter: str = ",", source: pa.Buffer | None = None
) -> pa.Table:
    if header:
        names = csv_header(path)
        require_columns(names, _RATING_COLUMNS, path.name)
    else:
        names = _RATING_COLUMNS
    return read_csv(
        path,
        names,
        _RATING_COLUMNS,
        header=header,
        delimiter=delimiter,
        quoting=header,
        source=source,
        types=_RATING_TYPES,
    )


def _movies_csv(path: Path, tags_path: Path) -> _Movies:
    names = csv_header(path)
    require_columns(names, ["movieId", "title", "genres"], path.name)
    table = read_csv(path, names, ["movieId", "title", "genres"])
    ids = parse_ids(table["movieId"], path.name, "movieId")
    _check_unique(ids, path.name)
    genres = [[g for g in row if g not in NO_GENRES] for row in parse_genres(table["genres"])]
    tags = _tags(tags_path, ids) if tags_path.is_file() else [""] * len(ids)
    released = np.full(len(ids), np.datetime64("NaT"), dtype="datetime64[s]")
    return _Movies(ids, table["title"].to_pylist(), genres, released, tags)


def _tags(path: Path, ids: pa.ChunkedArray) -> list[str]:
    """Per item: its most frequent distinct tags, lower-cased, joined by ", "."""
    names = csv_header(path)
    require_columns(names, ["movieId", "tag"], path.name)
    table = read_csv(path, names, ["movieId", "tag"])
    frame = pd.DataFrame(
        {
            "item": parse_ids(table["movieId"], path.name, "movieId").to_pandas(),
            "tag": table["tag"].to_pandas().str.strip().str.lower(),
        }
    )
    frame = frame[frame["tag"] != ""]
    counts = frame.groupby(["item", "tag"]).size().reset_index(name="n")
    counts = counts.sort_values(["item", "n", "tag"], ascending=[True, False, True])
    joined = counts.groupby("item").head(MAX_TAGS).groupby("item")["tag"].agg(", ".join)
    return ids.to_pandas().map(joined).fillna("").tolist()


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _movies_100k(path: Path, genre_path: Path) -> _Movies:
    genre_names = ML100K_GENRES
    if genre_path.is_file():
        lines = _decode(genre_path.read_bytes()).splitlines()
        pairs = [line.rsplit("|", 1) for line in lines if "|" in line]
        by_index = sorted(pairs, key=lambda pair: int(pair[1]) if pair[1].strip().isdigit() else 0)
        genre_names = [name for name, _ in by_index] or genre_names
    ids, titles, genres, released = [], [], [], []
    for row, line in enumerate(_decode(path.read_bytes()).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < 5 + len(genre_names) or not fields[0].strip():
            raise InputError(
                f"expected {5 + len(genre_names)} '|'-separated fields, got {len(fields)}",
                file=path.name,
                row=row,
            )
        flags = fields[5 : 5 + len(genre_names)]
        ids.append(fields[0].strip())
        titles.append(fields[1])
        genres.append(
            [
                g
                for g, f in zip(genre_names, flags, strict=True)
                if f.strip() == "1" and g not in NO_GENRES
            ]
        )
        released.append(fields[2].strip())
    dates = pd.to_datetime(pd.Series(released, dtype=object), format="%d-%b-%Y", errors="coerce")
    id_array = pa.chunked_array([pa.array(ids, pa.string())])
    _check_unique(id_array, path.name)
    return _Movies(id_array, titles, genres, dates.to_numpy(dtype="datetime64[s]"), [""] * len(ids))


def _movies_1m(path: Path) -> _Movies:
    ids, titles, genres = [], [], []
    for row, line in enumerate(_decode(path.read_bytes()).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("::")
        if len(fields) != 3 or not fields[0].strip():
            raise InputError(
                f"expected 3 '::'-separated fields, got {len(fields)}", file=path.name, row=row
            )
        ids.append(fields[0].strip())
        titles.append(fields[1])
        genres.append([g for g in fields[2].strip().split("|") if g and g not in NO_GENRES])
    id_array = pa.chunked_array([pa.array(ids, pa.string())])
    _check_unique(id_array, path.name)
    released = np.full(len(ids), np.datetime64("NaT"), dtype="datetime64[s]")
    return _Movies(id_array, titles, genres, released, [""] * len(ids))


def _check_unique(ids: pa.ChunkedArray, file: str) -> None:
    row = first_duplicate(ids)
    if row is not None:
        raise InputError(
            f"duplicate movie id {ids[row - 1].as_py()!r}", file=file, row=row, column="movieId"
        )
