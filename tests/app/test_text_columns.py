"""The catalog's text columns: Arrow arrays read item by item, spread by upserts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from app.items import _genre_matrix
from app.text_columns import TextColumn


def test_a_text_column_reads_python_values_and_spreads_like_the_numeric_columns() -> None:
    titles = TextColumn(pa.chunked_array([["a", "b"], ["c"]]))
    assert len(titles) == 3 and titles[2] == "c" and list(titles) == ["a", "b", "c"]
    # part rows are given in position order: item 1 replaced, items 3 and 4 appended
    grown = titles.spread(TextColumn(["B", "d", "e"]), np.array([1, 3, 4]))
    assert list(grown) == ["a", "B", "c", "d", "e"]
    assert list(titles) == ["a", "b", "c"]  # the old column is untouched
    genres = TextColumn([["x"], [], ["y", "x"]])
    assert genres[2] == ["y", "x"] and genres[1] == []
    assert list(genres.spread(TextColumn([["z"]]), np.array([0]))) == [["z"], [], ["y", "x"]]
    assert titles == TextColumn(["a", "b", "c"]) and titles != TextColumn(["a", "b"])


def test_the_genre_matrix_of_a_list_column_with_empty_and_null_lists() -> None:
    names, matrix = _genre_matrix(
        pa.array([["drama", "comedy"], [], None, ["horror", "drama"]], pa.list_(pa.string()))
    )
    assert names == ["comedy", "drama", "horror"]
    assert matrix.tolist() == [
        [True, True, False],
        [False, False, False],
        [False, False, False],
        [False, True, True],
    ]


def test_rows_already_in_item_order_are_not_copied_and_others_are_sorted() -> None:
    from app.items import _in_item_order

    ordered = pa.table({"item_index": [0, 1, 5], "title": ["a", "b", "c"]})
    assert _in_item_order(ordered) is ordered
    shuffled = pa.table({"item_index": [5, 0, 1], "title": ["c", "a", "b"]})
    assert _in_item_order(shuffled)["title"].to_pylist() == ["a", "b", "c"]
