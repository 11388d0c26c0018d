"""The item catalog held in memory for the request path.

Every stage reads item attributes by `item_index` from these arrays; only ANN searches go to
LanceDB. Loaded once per catalog version at start-up. The content vectors are the version's
`.npy` file mapped read-only where it has one (the request path gathers rows of it), else
decoded from the items table's column (versions built before the file existed).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from app.mapped_rows import MappedRows, RowGather, VectorRows, advise_random, rows_between
from app.text_columns import TextColumn

DAY = 86_400.0
COLUMNS = [
    "item_id",
    "item_index",
    "title",
    "description",
    "genres",
    "series",
    "series_position",
    "released",
    "first_seen",
    "n_users",
    "mean_rating",
    "popularity_decayed",
    "popularity_pct",
    "in_cf",
    "content_vector",
    "cf_vector",
]


def _matrix(column: pa.ChunkedArray) -> np.ndarray:
    array = column.combine_chunks()
    width = array.type.list_size
    return np.ascontiguousarray(
        array.values.to_numpy(zero_copy_only=False).reshape(-1, width), dtype=np.float32
    )


def _days(column: pa.ChunkedArray) -> np.ndarray:
    """Days since the epoch as float64, NaN where null."""
    seconds = pc.cast(pc.cast(column, pa.timestamp("s")), pa.int64()).to_numpy(zero_copy_only=False)
    return np.asarray(seconds, dtype=np.float64) / DAY


@dataclass
class ItemCatalog:
    ids: np.ndarray  # object array of str
    index: pd.Index
    titles: TextColumn
    descriptions: TextColumn
    genres: TextColumn  # a list of genre names per item
    genre_names: list[str]
    genre_matrix: np.ndarray  # (n, n_genres) bool
    series: np.ndarray  # int32 series code, -1 when none
    series_names: list[str]
    series_position: np.ndarray  # float64, NaN when none
    released_day: np.ndarray  # float64 days since epoch (release, else first seen), NaN unknown
    first_seen_day: np.ndarray
    n_users: np.ndarray
    mean_rating: np.ndarray
    popularity: np.ndarray  # time-decayed
    popularity_pct: np.ndarray
    in_cf: np.ndarray
    # (n, d) float32, L2-normalised: in memory, mapped read-only (np.memmap), or mapped with
    # upserted rows in memory (MappedRows). Read rows of it only: x[rows], np.take(x, rows, 0).
    content: VectorRows
    # (n, f) float32: in memory, or read through the CF search's norm-ordered copy
    # (ReorderedRows, set by the runtime); read rows of it only, as of `content`
    cf: VectorRows

    def __post_init__(self) -> None:
        # catalogs made in code (tests, tools) may give plain sequences
        for name in ("titles", "descriptions", "genres"):
            if not isinstance(getattr(self, name), TextColumn):
                setattr(self, name, TextColumn(getattr(self, name)))

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_table(
        cls, table: Any, content_file: Path | None = None, table_version: int | None = None
    ) -> ItemCatalog:
        """The items table's rows; the content vectors mapped from `content_file` if given (the
        table's column is then not read whole), else decoded from the column.

        Items upserted while serving change the version's table, not its file: when the table
        is no longer at `table_version` (the build's last, from the manifest), its column is
        read a batch at a time and the rows that differ from the file or come after it are
        held beside it (MappedRows)."""
        if content_file is None:
            return cls.from_arrow(table.to_arrow())
        columns = [c for c in COLUMNS if c != "content_vector"]
        rows = table.search().select(columns).limit(None).to_arrow()
        content = content_rows(table, content_file, table_version, rows.num_rows)
        return cls.from_arrow(rows, content)

    @classmethod
    def from_arrow(cls, rows: pa.Table, content: VectorRows | None = None) -> ItemCatalog:
        """A catalog of these items-table rows, in item_index order; `content`: their content
        vectors in item_index order, when `rows` leaves out the column."""
        columns = COLUMNS if content is None else [c for c in COLUMNS if c != "content_vector"]
        arrow = _in_item_order(rows.select(columns))
        genres = TextColumn(arrow["genres"])
        genre_names, genre_matrix = _genre_matrix(genres.values)
        series_codes, series_names = pd.factorize(
            pd.Series(arrow["series"].to_pylist(), dtype=object), use_na_sentinel=True
        )
        first_seen = _days(arrow["first_seen"])
        released = _days(arrow["released"])
        released = np.where(np.isnan(released), first_seen, released)
        ids = np.asarray(arrow["item_id"].to_pylist(), dtype=object)
        return cls(
            ids=ids,
            index=id_index(ids),
            titles=TextColumn(arrow["title"]),
            descriptions=TextColumn(arrow["description"]),
            genres=genres,
            genre_names=genre_names,
            genre_matrix=genre_matrix,
            series=series_codes.astype(np.int32),
            series_names=[str(s) for s in series_names],
            series_position=arrow["series_position"].to_numpy(zero_copy_only=False).astype(float),
            released_day=released,
            first_seen_day=first_seen,
            n_users=arrow["n_users"].to_numpy(zero_copy_only=False).astype(np.float64),
            mean_rating=arrow["mean_rating"].to_numpy(zero_copy_only=False).astype(np.float64),
            popularity=arrow["popularity_decayed"]
            .to_numpy(zero_copy_only=False)
            .astype(np.float64),
            popularity_pct=arrow["popularity_pct"]
            .to_numpy(zero_copy_only=False)
            .astype(np.float64),
            in_cf=arrow["in_cf"].to_numpy(zero_copy_only=False).astype(bool),
            content=_matrix(arrow["content_vector"]) if content is None else content,
            cf=_matrix(arrow["cf_vector"]),
        )

    def indices_of(self, ids: list[str] | tuple[str, ...]) -> np.ndarray:
        """item_index of each id, -1 for ids not in the catalog."""
        if not ids:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(self.index.get_indexer(pd.Index(list(ids))), dtype=np.int64)

    def indices_of_lists(self, column: pa.ChunkedArray | pa.Array) -> list[np.ndarray]:
        """`indices_of` for every row of a list<string> column, in one lookup (load path)."""
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        flat = array.flatten().to_pandas().to_numpy(dtype=object)
        found = np.asarray(self.index.get_indexer(pd.Index(flat)), dtype=np.int64)
        offsets = array.offsets.to_numpy() - array.offsets[0].as_py()
        return [found[offsets[i] : offsets[i + 1]] for i in range(len(array))]

    def index_of(self, item_id: str) -> int | None:
        found = int(self.indices_of([item_id])[0])
        return found if found >= 0 else None

    def with_rows(self, rows: pa.Table) -> ItemCatalog:
        """A new catalog with these items-table rows applied; this one is left untouched.

        A row whose item_index is already in the catalog replaces that item; the others must
        continue the numbering (len(self), len(self) + 1, ...) and are appended. Requests holding
        the old catalog keep a consistent view while the new one is swapped in.
        """
        positions = np.sort(rows["item_index"].to_numpy(zero_copy_only=False).astype(np.int64))
        part = ItemCatalog.from_arrow(rows)
        n = len(self)
        added = positions >= n
        if not np.array_equal(positions[added], np.arange(n, n + int(added.sum()))):
            raise ValueError("appended items must continue the item_index numbering")
        size = n + int(added.sum())

        def spread(old: np.ndarray, new: np.ndarray) -> np.ndarray:
            out = np.concatenate([old, new[added]]) if added.any() else old.copy()
            out[positions[~added]] = new[~added]
            return out

        genre_names = self.genre_names + [g for g in part.genre_names if g not in self.genre_names]
        genre_matrix = np.zeros((size, len(genre_names)), dtype=bool)
        genre_matrix[:n, : len(self.genre_names)] = self.genre_matrix
        genre_matrix[positions] = False
        column = {g: i for i, g in enumerate(genre_names)}
        for position, item_genres in zip(positions.tolist(), part.genres, strict=True):
            genre_matrix[position, [column[g] for g in item_genres]] = True

        series_names = self.series_names + [
            s for s in part.series_names if s not in self.series_names
        ]
        code = {s: i for i, s in enumerate(series_names)}
        part_series = np.array(
            [code[part.series_names[c]] if c >= 0 else -1 for c in part.series.tolist()],
            dtype=np.int32,
        )

        special: dict[str, Any] = {
            "index": None,
            "content": _spread_rows(self.content, part.content, positions, added),
            "cf": _spread_rows(self.cf, part.cf, positions, added),
            "titles": self.titles.spread(part.titles, positions),
            "descriptions": self.descriptions.spread(part.descriptions, positions),
            "genres": self.genres.spread(part.genres, positions),
            "genre_names": genre_names,
            "genre_matrix": genre_matrix,
            "series": spread(self.series, part_series),
            "series_names": series_names,
        }
        values: dict[str, Any] = {}
        for f in fields(self):
            if f.name in special:
                values[f.name] = special[f.name]
            else:
                values[f.name] = spread(getattr(self, f.name), getattr(part, f.name))
        values["index"] = id_index(values["ids"])
        return ItemCatalog(**values)


def id_index(ids: np.ndarray) -> pd.Index:
    """The item id -> item_index lookup, its hash table built now. pandas builds it on the first
    lookup (83 ms at 1M items, about ten times that at 10M), which after an upsert would fall on
    the next request looking an id up (a user's live events, an excluded id, an `item` query)."""
    index = pd.Index(ids)
    index.get_indexer(index[:1])
    return index


def _in_item_order(rows: pa.Table) -> pa.Table:
    """The rows by item_index. A version's table is written in that order and stays so until
    items are upserted: sorting anyway would copy the whole table (several GB at 10M items)."""
    index = rows["item_index"].to_numpy()
    if len(index) < 2 or bool((index[1:] > index[:-1]).all()):
        return rows
    return rows.sort_by("item_index")


def _genre_matrix(genres: pa.Array) -> tuple[list[str], np.ndarray]:
    """The genre names (sorted) and the (items, genres) membership of a list<string> column."""
    lengths = pc.fill_null(pc.list_value_length(genres), 0).to_numpy(zero_copy_only=False)
    values = pc.list_flatten(genres)
    names = sorted(v for v in pc.unique(values).to_pylist() if v is not None)
    matrix = np.zeros((len(genres), len(names)), dtype=bool)
    codes = pc.index_in(values, value_set=pa.array(names, pa.string()))
    known = pc.is_valid(codes).to_numpy(zero_copy_only=False)
    rows = np.repeat(np.arange(len(genres)), lengths)
    matrix[rows[known], codes.to_numpy(zero_copy_only=False)[known].astype(np.int64)] = True
    return names, matrix


def content_rows(
    table: Any, content_file: Path, table_version: int | None, n_items: int
) -> VectorRows:
    """The content vectors of the table's `n_items` rows in item_index order: the version's
    file, mapped, with the rows upserted since `table_version` held beside it.
    Raises ValueError when the file does not fit the table."""
    mapped = np.load(content_file, mmap_mode="r", allow_pickle=False)
    if mapped.ndim != 2 or mapped.dtype != np.float32 or len(mapped) > n_items:
        raise ValueError(
            f"{content_file.name} holds {mapped.dtype} {mapped.shape} for {n_items} items"
        )
    advise_random(mapped)  # requests read a few thousand rows at random
    if len(mapped) < n_items or table_version != table.version:
        return _with_table_rows(table, mapped)
    return mapped


def _with_table_rows(table: Any, base: np.ndarray, batch_rows: int = 65_536) -> VectorRows:
    """`base` (the version's file) with the rows where the table's column differs from it."""
    positions, rows = [], []
    query = table.search().select(["item_index", "content_vector"]).limit(None)
    for batch in query.to_batches(batch_rows):
        index = batch.column(0).to_numpy(zero_copy_only=False).astype(np.int64)
        column = batch.column(1)
        vectors = np.asarray(
            column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32
        ).reshape(len(column), -1)
        differs = index >= len(base)
        inside = np.flatnonzero(~differs)
        at = index[inside]
        if len(at) and (np.diff(at) == 1).all():
            known = rows_between(base, int(at[0]), int(at[-1]) + 1)  # one read, not a fault a page
        else:
            known = base[at]
        differs[inside] = np.any(vectors[inside] != known, axis=1)
        positions.append(index[differs])
        rows.append(vectors[differs])
    if not any(len(p) for p in positions):
        return base
    return MappedRows(base, np.concatenate(positions), np.concatenate(rows))


def _spread_rows(
    old: VectorRows, new: VectorRows, positions: np.ndarray, added: np.ndarray
) -> VectorRows:
    """`with_rows` for a vector matrix read by rows (the content vectors, the CF factors): a
    mapped or reordered one stays so, the changed rows held beside it (a concatenation would
    read the whole file into memory, and the file is shared by every process serving the
    version: never written)."""
    assert isinstance(new, np.ndarray)  # rows decoded from the table (ItemCatalog.from_arrow)
    rows = np.asarray(new, dtype=np.float32)
    if isinstance(old, RowGather | np.memmap):
        return MappedRows.of(old).with_rows(positions, rows)
    out = np.concatenate([old, rows[added]]) if added.any() else old.copy()
    out[positions[~added]] = rows[~added]
    return out
