"""A memory-mapped matrix with some rows replaced and rows appended, held in memory.

A version's content vectors are a read-only `.npy` mapped by every serving process (15 GB at 10M
items, shared through the page cache by the replicas of a host). Items upserted while serving
must change or add rows without writing to that file and without concatenating it into the
heap, which `np.concatenate` would do. `MappedRows` keeps the mapped base and, sorted by row,
the rows that differ from it: replaced rows of the base and the rows appended after it.

It offers what the request path uses of an array: `len`, `shape`, `dtype`, `ndim`, indexing by
an int, an int or bool array or a slice (always gathered rows, a copy), and `take(..., axis=0)`
so that `np.take(x, rows, axis=0)` works. It refuses to turn into a whole array.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np


class MappedRows:
    """A read-only (n, d) float32 matrix: `base` with the rows `positions` taken from `rows`."""

    ndim = 2

    def __init__(self, base: np.ndarray, positions: np.ndarray, rows: np.ndarray) -> None:
        order = np.argsort(positions, kind="stable")
        self.base = base
        self.positions = np.asarray(positions, dtype=np.int64)[order]
        self.rows = np.asarray(rows, dtype=np.float32)[order]
        self.rows.setflags(write=False)
        appended = self.positions[self.positions >= len(base)]
        if not np.array_equal(appended, np.arange(len(base), len(base) + len(appended))):
            raise ValueError("appended rows must continue the base's numbering")
        if len(np.unique(self.positions)) != len(self.positions):
            raise ValueError("a row is given twice")
        self._len = len(base) + len(appended)

    @classmethod
    def of(cls, matrix: np.ndarray | MappedRows) -> MappedRows:
        if isinstance(matrix, MappedRows):
            return matrix
        return cls(matrix, np.zeros(0, dtype=np.int64), np.zeros((0, matrix.shape[1]), np.float32))

    def with_rows(self, positions: np.ndarray, rows: np.ndarray) -> MappedRows:
        """A new matrix with these rows set (replaced, or appended at len(self), ...); this one
        and its base are left untouched."""
        positions = np.asarray(positions, dtype=np.int64)
        kept = ~np.isin(self.positions, positions)
        return MappedRows(
            self.base,
            np.concatenate([self.positions[kept], positions]),
            np.concatenate([self.rows[kept], np.asarray(rows, dtype=np.float32)]),
        )

    def __len__(self) -> int:
        return self._len

    @property
    def shape(self) -> tuple[int, int]:
        return (self._len, int(self.base.shape[1]))

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(np.float32)

    def take(
        self, indices: Any, axis: int | None = 0, out: np.ndarray | None = None, mode: str = "raise"
    ) -> np.ndarray:
        """Rows `indices` (any int array shape: the result has that shape plus (d,))."""
        if axis != 0 or mode != "raise":
            raise NotImplementedError("MappedRows gathers rows: axis=0, mode='raise'")
        idx = np.asarray(indices)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        flat = idx.astype(np.int64).ravel()
        if len(flat) and (flat.min() < -self._len or flat.max() >= self._len):
            raise IndexError(f"row index out of range for {self._len} rows")
        flat = np.where(flat < 0, flat + self._len, flat)
        result = np.empty((len(flat), self.shape[1]), dtype=np.float32)
        at = np.searchsorted(self.positions, flat)
        inside = at < len(self.positions)
        mine = np.zeros(len(flat), dtype=bool)
        mine[inside] = self.positions[at[inside]] == flat[inside]
        result[mine] = self.rows[at[mine]]
        result[~mine] = self.base[flat[~mine]]
        result = result.reshape((*idx.shape, self.shape[1]))
        if out is not None:
            out[...] = result
            return out
        return result

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            first, *rest = key
            return self[first][(slice(None), *rest)] if np.ndim(first) else self[first][tuple(rest)]
        if isinstance(key, slice):
            return self.take(np.arange(*key.indices(self._len)))
        if isinstance(key, int | np.integer):
            return self.take(np.array([key]))[0]
        return self.take(key)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(
            "MappedRows is not turned into a whole array (it would read the mapped file into "
            "memory): gather rows with [rows] or np.take(x, rows, axis=0)"
        )


# A matrix of vectors read by rows: in memory, mapped (np.memmap) or mapped with rows beside it.
VectorRows: TypeAlias = np.ndarray | MappedRows
