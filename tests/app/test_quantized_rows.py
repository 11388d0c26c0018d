"""Content vectors as int8 codes with a scale per row: known answers and error bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.mapped_rows import MappedRows, rows_between
from app.quantized_rows import CHUNK, STEPS, QuantizedRows, as_served, row_scores


def unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_a_known_row_codes_to_its_steps() -> None:
    coded = QuantizedRows.of(np.array([[1.27, -0.635, 0.0, 0.3]], dtype=np.float32))
    np.testing.assert_array_equal(coded.codes, [[127, -64, 0, 30]])  # -63.5 rounds to even
    np.testing.assert_allclose(coded.scales, [0.01])
    np.testing.assert_allclose(coded[0], [1.27, -0.64, 0.0, 0.3], atol=1e-6)


def test_an_all_zero_row_stays_zero() -> None:
    coded = QuantizedRows.of(np.zeros((2, 3), dtype=np.float32))
    np.testing.assert_array_equal(coded[[0, 1]], np.zeros((2, 3)))


def test_a_non_finite_vector_is_refused_naming_its_rows() -> None:
    rows = unit_rows(10, 4, 1)
    rows[7, 2] = np.nan
    with pytest.raises(ValueError, match=r"rows 0\.\.9 is not finite"):
        QuantizedRows.of(rows)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 40),
    d=st.integers(1, 48),
    seed=st.integers(0, 10_000),
    spread=st.floats(1e-3, 1e3),
)
def test_every_component_is_within_half_a_step(n: int, d: int, seed: int, spread: float) -> None:
    rows = (np.random.default_rng(seed).normal(size=(n, d)) * spread).astype(np.float32)
    coded = QuantizedRows.of(rows)
    step = np.abs(rows).max(axis=1) / STEPS
    error = np.abs(coded[np.arange(n)] - rows)
    assert (error <= step[:, None] * 0.5 * (1 + 1e-5) + 1e-30).all()
    assert coded.shape == rows.shape and coded.dtype == np.float32


def test_sentence_sized_dot_products_err_by_5e_4() -> None:
    """384-d unit vectors, as the text model gives: the error the module's docstring states."""
    rows, queries = unit_rows(5_000, 384, 2), unit_rows(50, 384, 3)
    coded = QuantizedRows.of(rows)
    exact = rows @ queries.T
    approximate = coded[np.arange(len(rows))] @ queries.T
    error = approximate - exact
    assert np.sqrt(np.mean(error**2)) < 6e-4 and np.abs(error).max() < 3e-3
    assert coded.nbytes == rows.nbytes // 4 + len(rows) * 4


def test_a_mapped_file_over_several_chunks_codes_as_the_array(tmp_path: Path) -> None:
    rows = unit_rows(CHUNK + 123, 8, 4)
    np.save(tmp_path / "v.npy", rows)
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    from_file, from_array = QuantizedRows.of(mapped), QuantizedRows.of(rows)
    np.testing.assert_array_equal(from_file.codes, from_array.codes)
    np.testing.assert_array_equal(from_file.scales, from_array.scales)
    picked = np.array([0, CHUNK - 1, CHUNK, CHUNK + 122])
    np.testing.assert_array_equal(np.take(from_file, picked, axis=0), from_array[picked])
    np.testing.assert_array_equal(
        rows_between(from_file, CHUNK - 2, CHUNK + 2), from_file[-125:-121]
    )


def test_upserted_rows_beside_the_codes_are_exact() -> None:
    rows = unit_rows(20, 16, 5)
    new = unit_rows(2, 16, 6)
    served = MappedRows.of(QuantizedRows.of(rows)).with_rows(np.array([3, 20]), new)
    assert len(served) == 21
    np.testing.assert_array_equal(served[[3, 20]], new)
    np.testing.assert_allclose(served[[0, 4]], rows[[0, 4]], atol=1e-2)
    assert not np.array_equal(served[[0, 4]], rows[[0, 4]])  # the others are still the codes


def test_row_scores_on_the_codes_equal_the_decoded_rows_product() -> None:
    rows, query = unit_rows(500, 384, 8), unit_rows(1, 384, 9)[0]
    coded = QuantizedRows.of(rows)
    picked = np.array([499, 3, 3, 250, 0])
    np.testing.assert_allclose(
        row_scores(coded, picked, query), coded[picked] @ query, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(row_scores(rows, picked, query), rows[picked] @ query)


def test_only_catalogs_over_the_threshold_are_coded() -> None:
    rows = unit_rows(10, 4, 10)
    assert as_served(rows, 10) is rows
    assert isinstance(as_served(rows, 9), QuantizedRows)
