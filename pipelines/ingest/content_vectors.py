"""The `content_vector` column of a parquet items file, read one record batch at a time.

Each batch's lists are checked and copied into the (n, dim) float32 result and dropped, instead of
reading the column as Arrow lists, combining its chunks, flattening and casting them and placing
them row by row (four copies of 1.5 GB at 1M items). The result is a memory-mapped `.npy` file
when the caller names one (a build: 15 GB at 10M items, never whole in the heap).
Parquet decodes a whole row group's column chunk at a time, so a batch costs about three times
its row group's vectors (0.4 to 0.5 GB for the generator's 100,000-row groups of 384 floats).
The batches are read one row group per `iter_batches` call: a single call over the whole file
(pyarrow 26) kept every row group it had read allocated until it finished, the whole column
(1.5 GB at 1M items, and the 20 GB ingest peak of a 10M build).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from app.errors import InputError
from pipelines.content_file import allocate, fill_rows
from pipelines.ingest.validate import first_bad_row

COLUMN = "content_vector"
BATCH_ROWS = 65_536


def read_content_vectors(path: Path, out: Path | None = None) -> np.ndarray | None:
    """(n, dim) float32 aligned with the file's rows, NaN rows for nulls; None when no row has a
    vector. With `out`, the result is a writable memory-mapped `.npy` there. Raises `InputError`
    naming the row of a vector whose length differs from the first."""
    file = path.name
    try:
        parquet = pq.ParquetFile(path)
        _check_type(parquet.schema_arrow.field(COLUMN).type, file)
        vectors: np.ndarray | None = None
        dim = -1
        start = 0
        for batch in _batches(parquet):
            lists = batch.column(0)
            present = pc.is_valid(lists).to_numpy(zero_copy_only=False)
            if vectors is None and present.any():
                lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
                dim = int(lengths[present][0])
                vectors = allocate(parquet.metadata.num_rows, dim, out)
                fill_rows(vectors, 0, start)  # the rows before: no vector
            if vectors is not None:
                _place(lists, present, vectors, start, dim, file)
            start += len(lists)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"unreadable parquet file: {exc}", file=file) from None
    finally:
        # Arrow's allocator keeps the freed row-group buffers (about 0.4 GB) for reuse otherwise.
        pa.default_memory_pool().release_unused()
    return vectors


def _batches(parquet: pq.ParquetFile) -> Iterator[pa.RecordBatch]:
    for group in range(parquet.metadata.num_row_groups):
        yield from parquet.iter_batches(batch_size=BATCH_ROWS, row_groups=[group], columns=[COLUMN])


def _check_type(kind: pa.DataType, file: str) -> None:
    is_list = (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    )
    if not is_list or not (
        pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type)
    ):
        raise InputError(
            f"content_vector must be a list of floats, not {kind}", file=file, column=COLUMN
        )


def _place(
    lists: pa.Array, present: np.ndarray, vectors: np.ndarray, start: int, dim: int, file: str
) -> None:
    """Copy one batch's vectors into rows `start`.. of `vectors` (NaN rows for nulls), after
    checking their length."""
    if not present.any():
        fill_rows(vectors, start, start + len(lists))
        return
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
    wrong = present & (lengths != dim) if dim > 0 else present
    if wrong.any():
        row = first_bad_row(wrong)
        size = int(lengths[row - 1])
        message = (
            f"dimension mismatch: {size} values where the first vector has {dim}"
            if dim > 0
            else "empty vector"
        )
        raise InputError(message, file=file, row=start + row, column=COLUMN)
    values = pc.list_flatten(lists).cast(pa.float32()).to_numpy(zero_copy_only=False)
    rows = values.reshape(-1, dim)
    if present.all():
        vectors[start : start + len(lists)] = rows
    else:
        block = np.full((len(lists), dim), np.nan, dtype=np.float32)
        block[present] = rows
        vectors[start : start + len(lists)] = block
