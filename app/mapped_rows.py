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

import mmap
from typing import Any, TypeAlias

import numpy as np


class RowGather:
    """What the request path uses of an (n, d) float32 array, for matrices that are read by
    gathering rows only: `len`, `shape`, `dtype`, `ndim`, indexing by an int, an int or bool
    array or a slice (always a gathered copy), and `take(..., axis=0)` so that
    `np.take(x, rows, axis=0)` works. Subclasses give `_gather` (rows by non-negative int64)."""

    ndim = 2
    _len: int
    _width: int

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __len__(self) -> int:
        return self._len

    @property
    def shape(self) -> tuple[int, int]:
        return (self._len, self._width)

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(np.float32)

    def take(
        self, indices: Any, axis: int | None = 0, out: np.ndarray | None = None, mode: str = "raise"
    ) -> np.ndarray:
        """Rows `indices` (any int array shape: the result has that shape plus (d,))."""
        if axis != 0 or mode != "raise":
            raise NotImplementedError(f"{type(self).__name__} gathers rows: axis=0, mode='raise'")
        idx = np.asarray(indices)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        flat = idx.astype(np.int64).ravel()
        if len(flat) and (flat.min() < -self._len or flat.max() >= self._len):
            raise IndexError(f"row index out of range for {self._len} rows")
        flat = np.where(flat < 0, flat + self._len, flat)
        result = self._gather(flat).reshape((*idx.shape, self._width))
        if out is not None:
            out[...] = result
            return out
        return result

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            first, *rest = key  # rows first; the rest indexes within each gathered vector
            return self[first][(Ellipsis, *rest)]
        if isinstance(key, slice):
            return self.take(np.arange(*key.indices(self._len)))
        if isinstance(key, int | np.integer):
            return self.take(np.array([key]))[0]
        return self.take(key)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(
            f"{type(self).__name__} is not turned into a whole array (a copy of every row): "
            "gather rows with [rows] or np.take(x, rows, axis=0)"
        )


class MappedRows(RowGather):
    """A read-only (n, d) float32 matrix: `base` with the rows `positions` taken from `rows`."""

    def __init__(
        self, base: np.ndarray | RowGather, positions: np.ndarray, rows: np.ndarray
    ) -> None:
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
        self._width = int(base.shape[1])

    @classmethod
    def of(cls, matrix: np.ndarray | RowGather) -> MappedRows:
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

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        result = np.empty((len(rows), self._width), dtype=np.float32)
        at = np.searchsorted(self.positions, rows)
        inside = at < len(self.positions)
        mine = np.zeros(len(rows), dtype=bool)
        mine[inside] = self.positions[at[inside]] == rows[inside]
        result[mine] = self.rows[at[mine]]
        result[~mine] = self.base[rows[~mine]]
        return result


class ReorderedRows(RowGather):
    """Rows held in another order: row i is `base[position[i]]`. The CF factors are kept this
    way by the norm-ordered search's own sorted copy (`NormOrderedSearch.by_item`), so the
    catalog does not hold a second copy in item order (2.4 GB at 10M items)."""

    def __init__(self, base: np.ndarray, position: np.ndarray) -> None:
        self.position = np.asarray(position, dtype=np.int64)
        if len(self.position) and not 0 <= self.position.min() <= self.position.max() < len(base):
            raise ValueError(f"positions outside the {len(base)} rows held")
        self.base = base
        self._len = len(self.position)
        self._width = int(base.shape[1])

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        return np.take(self.base, self.position[rows], axis=0)


# A matrix of vectors read by rows: in memory, mapped (np.memmap), mapped with rows beside it,
# or kept in another order.
VectorRows: TypeAlias = np.ndarray | RowGather


def _whole_file_map(matrix: Any) -> np.memmap | None:
    """The matrix, when it is C-ordered and mapped by np.memmap/np.load itself (not a view of
    one: a view keeps its parent's file offset)."""
    if (
        isinstance(matrix, np.memmap)
        and isinstance(matrix.base, mmap.mmap)
        and matrix.filename is not None
        and matrix.flags.c_contiguous
    ):
        return matrix
    return None


def advise_random(matrix: VectorRows) -> None:
    """Tell the kernel that a mapped matrix is read at random rows (a request's few thousand).
    Otherwise each page not cached reads 128 kB around it: at 10M items, with the 15 GB file
    larger than the page cache, rows gathered in partition order took 10 minutes for 3% of them."""
    mapped = _whole_file_map(matrix.base if isinstance(matrix, MappedRows) else matrix)
    if mapped is not None and hasattr(mmap, "MADV_RANDOM"):
        mapped._mmap.madvise(mmap.MADV_RANDOM)  # type: ignore[attr-defined]


# Linux 5.14+: fault every page of a mapping in at once, for reading (not in Python's mmap module)
MADV_POPULATE_READ = 22
POPULATE_SHARE = 0.5  # of the memory available: a larger mapped file stays faulted in by use


def populate(matrix: VectorRows, share: float = POPULATE_SHARE) -> bool:
    """Map every page of a mapped matrix into this process now, when its file takes at most
    `share` of the memory available; True if it did. A new process otherwise takes a page fault
    for every few rows it reads first, though the file is in the page cache: at 1M items 200
    random content rows took 0.94 ms on first reading and 0.14 ms after, for a server's first
    thousands of requests; mapping the 1.5 GB file took 0.39 s. A file not cached yet is read
    ahead in large pieces (1.5 GB from disk in 2.0 s; advised random, a page at a time, 114 s)
    and the mapping is left advised random, as the request path reads it. From disk, a file
    left to be read by use is read a page at a time once the kernel's read-around gives up on a
    reader at random: at 1M items with the item neighbours left so (as at 10M, where they took
    more than the quarter of the memory available this allowed before), the first 1,000
    requests took 72-73k major faults, p99 63-86 ms; mapped in at load: none, p99 31-32 ms on
    the same stretch of the machine.
    Mapped, not only read into the page cache: pages no process maps are reclaimed first, and
    this machine's kernel pages them out after a minute unused (a DAMON scheme); the pages of a
    file every worker maps are shared by them."""
    mapped = _whole_file_map(matrix.base if isinstance(matrix, MappedRows) else matrix)
    if mapped is None or not hasattr(mapped, "_mmap") or not hasattr(mmap, "MADV_SEQUENTIAL"):
        return False
    size = len(mapped._mmap)  # type: ignore[attr-defined]
    available = _available_bytes()
    if available is None or size > share * available:
        return False
    mapping = mapped._mmap  # type: ignore[attr-defined]
    try:
        mapping.madvise(mmap.MADV_SEQUENTIAL)
        mapping.madvise(MADV_POPULATE_READ)
    except (OSError, ValueError):  # an older kernel
        return False
    finally:
        advise_random(matrix)
    return True


def _available_bytes() -> int | None:
    """The kernel's estimate of memory available without swapping (MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def rows_between(matrix: VectorRows, start: int, stop: int) -> np.ndarray:
    """Rows start..stop as one array. From a mapped file they are read with one sequential
    read, not faulted in a page at a time (the mapping is advised random: see advise_random)."""
    stop = max(start, min(stop, len(matrix)))
    if isinstance(matrix, MappedRows):
        end = min(stop, len(matrix.base))
        out = np.empty((stop - start, matrix.shape[1]), dtype=np.float32)
        if start < end:
            out[: end - start] = rows_between(matrix.base, start, end)
        lo, hi = np.searchsorted(matrix.positions, [start, stop])
        out[matrix.positions[lo:hi] - start] = matrix.rows[lo:hi]
        return out
    mapped = _whole_file_map(matrix)
    if mapped is None:
        return np.asarray(matrix[start:stop], dtype=np.float32)
    width = int(np.prod(mapped.shape[1:]))
    with open(str(mapped.filename), "rb") as file:
        file.seek(mapped.offset + start * width * mapped.itemsize)
        flat = np.fromfile(file, dtype=mapped.dtype, count=(stop - start) * width)
    return flat.reshape(-1, *mapped.shape[1:]).astype(np.float32, copy=False)
