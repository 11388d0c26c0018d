"""The content vectors of a parquet items file, read batch by batch, as the whole column gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.errors import InputError
from pipelines.ingest import content_vectors
from pipelines.ingest.content_vectors import read_content_vectors


def _items(path: Path, vectors: list[list[float] | None], kind: pa.DataType) -> Path:
    file = path / "items.parquet"
    ids = [f"i{n}" for n in range(len(vectors))]
    # Small row groups as well as small batches: the reader must cross both.
    pq.write_table(
        pa.table({"item_id": ids, "content_vector": pa.array(vectors, kind)}),
        file,
        row_group_size=7,
    )
    return file


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(content_vectors, "BATCH_ROWS", 5)


@pytest.mark.parametrize(
    "kind", [pa.list_(pa.float64()), pa.large_list(pa.float32()), pa.list_(pa.float32(), 3)]
)
def test_batches_give_the_whole_columns_vectors(tmp_path: Path, kind: pa.DataType) -> None:
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(23, 3))
    vectors = [None if n % 4 == 1 or n < 6 else rows[n].tolist() for n in range(23)]
    read = read_content_vectors(_items(tmp_path, vectors, kind))
    assert read is not None and read.dtype == np.float32 and read.shape == (23, 3)
    for n, vector in enumerate(vectors):
        if vector is None:
            assert np.isnan(read[n]).all()
        else:
            np.testing.assert_array_equal(read[n], np.asarray(vector, dtype=np.float32))


def test_no_vector_at_all_is_none(tmp_path: Path) -> None:
    assert read_content_vectors(_items(tmp_path, [None] * 12, pa.list_(pa.float32()))) is None


def test_a_wrong_length_in_a_later_batch_names_its_row(tmp_path: Path) -> None:
    vectors: list[list[float] | None] = [[1.0, 2.0]] * 16 + [[1.0, 2.0, 3.0]] + [[1.0, 2.0]] * 3
    with pytest.raises(InputError) as error:
        read_content_vectors(_items(tmp_path, vectors, pa.list_(pa.float32())))
    assert (error.value.file, error.value.row, error.value.column) == (
        "items.parquet",
        17,
        "content_vector",
    )
    assert "3 values where the first vector has 2" in str(error.value)


def test_an_empty_first_vector_is_refused(tmp_path: Path) -> None:
    vectors: list[list[float] | None] = [None] * 8 + [[]] + [[1.0]]
    with pytest.raises(InputError, match="empty vector") as error:
        read_content_vectors(_items(tmp_path, vectors, pa.list_(pa.float32())))
    assert error.value.row == 9


def test_strings_are_not_vectors(tmp_path: Path) -> None:
    file = tmp_path / "items.parquet"
    pq.write_table(pa.table({"item_id": ["a"], "content_vector": [["x"]]}), file)
    with pytest.raises(InputError, match="list of floats"):
        read_content_vectors(file)


def test_memory_held_while_reading_stays_near_one_row_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 8 row groups of 2 MB of vectors: what Arrow holds at each batch must not grow with the
    # row groups already read (one iter_batches over the file held them all: the whole column)
    monkeypatch.setattr(content_vectors, "BATCH_ROWS", 1_000)
    groups, rows, dim = 8, 4_000, 128
    file = tmp_path / "items.parquet"
    values = np.random.default_rng(0).normal(size=(groups * rows, dim)).astype(np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), dim)
    table = pa.table({"item_id": [f"i{n}" for n in range(groups * rows)], "content_vector": column})
    pq.write_table(table, file, row_group_size=rows)
    del table, column
    held: list[int] = []
    place = content_vectors._place

    def placing(*args: object, **kwargs: object) -> None:
        held.append(pa.total_allocated_bytes())
        place(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(content_vectors, "_place", placing)
    before = pa.total_allocated_bytes()
    out = read_content_vectors(file)
    assert out is not None
    np.testing.assert_array_equal(out, values)
    group_bytes = rows * dim * 4
    assert max(held) - before < 4 * group_bytes, f"{(max(held) - before) / group_bytes:.1f} groups"
