"""The catalog's text columns (titles, descriptions, genre lists) as single Arrow arrays.

As numpy object arrays and Python lists, every item's title, description and genres were Python
objects of their own: 470 MB at 1M items for those three, 5 GB at 10M. An Arrow array keeps the
same text in a few contiguous buffers. The request path reads a few dozen items' text (the items
shown), one item at a time, so the cost of making a Python value on each read does not matter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa


class TextColumn:
    """Strings (or lists of strings) by item_index: `column[i]` is the Python value of item i."""

    def __init__(self, values: pa.Array | pa.ChunkedArray | Sequence[Any] | np.ndarray) -> None:
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        elif not isinstance(values, pa.Array):
            values = pa.array(list(values))
        self.values: pa.Array = values

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int) -> Any:
        return self.values[int(index)].as_py()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.values.to_pylist())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextColumn) and self.values.equals(other.values)

    __hash__ = None  # type: ignore[assignment]  # mutable-looking value type: compared, not hashed

    def to_numpy(self) -> np.ndarray:
        """Every value as a numpy object array (for the offline tools, not the request path)."""
        return np.asarray(self.values.to_pylist(), dtype=object)

    def spread(self, new: TextColumn, positions: np.ndarray) -> TextColumn:
        """A new column: this one's values, with `new`'s (row j at `positions[j]`) replacing or
        appending (positions from len(self) on continue the numbering). This one is untouched."""
        n = len(self)
        size = max(n, int(positions.max()) + 1) if len(positions) else n
        mapping = np.arange(size, dtype=np.int64)
        mapping[positions] = n + np.arange(len(positions))
        merged = pa.concat_arrays([self.values, new.values.cast(self.values.type)])
        return TextColumn(merged.take(pa.array(mapping)))
