"""Checking and parsing the columns of input tables, shared by the input formats.

Every check is vectorised (pyarrow compute / numpy). A Python loop runs only after a vectorised
check has found a problem, to name the first bad row. Rows are 1-based data rows, header excluded,
and every failure is an `InputError` naming the file, the row and the column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from app.errors import InputError
from app.events import EVENT_TYPES
from pipelines.ingest.raw import EVENT_COLUMNS, ITEM_COLUMNS

_NUMBER = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
_YEAR = r"^\d{4}$"
_NOT_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def first_bad_row(mask: np.ndarray | pa.Array | pa.ChunkedArray) -> int:
    """1-based index of the first True in a boolean mask (nulls count as False)."""
    if not isinstance(mask, np.ndarray):
        mask = pc.fill_null(mask, False).to_numpy(zero_copy_only=False)
    return int(np.flatnonzero(mask)[0]) + 1


def _text(col: pa.ChunkedArray, row: int) -> str:
    value = col[row - 1].as_py()
    return repr(value if value is not None else "")


def as_text(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """A column as trimmed strings (nulls stay null)."""
    if not pa.types.is_string(col.type):
        col = pc.cast(col, pa.string())
    return pc.utf8_trim_whitespace(col)


def is_empty(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """True where a trimmed string column is null or ""."""
    return pc.fill_null(pc.equal(pc.utf8_length(col), 0), True)


# --- columns -----------------------------------------------------------------------------------


def require_columns(names: list[str], required: list[str], file: str) -> None:
    for column in required:
        if column not in names:
            raise InputError(
                f"missing required column (found: {', '.join(names)})", file=file, column=column
            )


def parse_ids(col: pa.ChunkedArray, file: str, column: str) -> pa.ChunkedArray:
    """Ids as trimmed strings; an empty or missing id is an error."""
    ids = as_text(col)
    empty = is_empty(ids)
    if pc.any(empty).as_py():
        raise InputError("empty id", file=file, row=first_bad_row(empty), column=column)
    return ids


def parse_timestamps(col: pa.ChunkedArray, file: str, column: str) -> np.ndarray:
    """Unix seconds (int64) from numbers, numeric strings or ISO 8601 strings (naive = UTC)."""
    kind = col.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        seconds = pc.cast(
            pc.cast(col, pa.timestamp("s", getattr(kind, "tz", None)), safe=False), pa.int64()
        )
        return _no_nulls(seconds, file, column)
    if pa.types.is_integer(kind):
        return _no_nulls(pc.cast(col, pa.int64()), file, column)
    if pa.types.is_floating(kind):
        values = col.to_numpy(zero_copy_only=False).astype(np.float64)
        return _seconds_from_floats(values, np.isnan(values), col, file, column)
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise InputError(
            f"timestamps must be numbers or strings, not {kind}", file=file, column=column
        )
    try:
        return _no_nulls(pc.cast(col, pa.int64()), file, column)
    except pa.ArrowInvalid:
        pass
    text = as_text(col)
    empty = is_empty(text)
    numeric = pc.fill_null(pc.match_substring_regex(text, _NUMBER), False)
    values = pc.cast(pc.if_else(numeric, text, "nan"), pa.float64()).to_numpy().copy()
    iso_mask = ~(numeric.to_numpy(zero_copy_only=False) | empty.to_numpy(zero_copy_only=False))
    if iso_mask.any():
        iso = pd.to_datetime(
            pd.Series(pc.filter(text, pa.chunked_array([iso_mask])).to_numpy(zero_copy_only=False)),
            format="ISO8601",
            utc=True,
            errors="coerce",
        )
        micros = iso.dt.tz_localize(None).to_numpy(dtype="datetime64[us]").astype(np.int64)
        values[iso_mask] = np.where(
            iso.isna().to_numpy(), np.nan, np.floor_divide(micros, 1_000_000)
        )
    return _seconds_from_floats(values, np.isnan(values), col, file, column)


def _no_nulls(seconds: pa.ChunkedArray, file: str, column: str) -> np.ndarray:
    if seconds.null_count:
        row = first_bad_row(pc.is_null(seconds))
        raise InputError("missing timestamp", file=file, row=row, column=column)
    return seconds.to_numpy().astype(np.int64, copy=False)


def _seconds_from_floats(
    values: np.ndarray, bad: np.ndarray, col: pa.ChunkedArray, file: str, column: str
) -> np.ndarray:
    bad = bad | ~np.isfinite(values) | (np.abs(values) > 2.0**62)
    if bad.any():
        row = first_bad_row(bad)
        raise InputError(
            f"unparseable timestamp {_text(col, row)} (expected unix seconds or ISO 8601)",
            file=file,
            row=row,
            column=column,
        )
    return np.floor(values).astype(np.int64)


def parse_values(
    col: pa.ChunkedArray, file: str, column: str, *, required: bool = False
) -> np.ndarray:
    """Finite float64 values; missing cells are NaN unless `required`. NaN/inf text is an error."""
    kind = col.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        missing = pc.is_null(col).to_numpy(zero_copy_only=False)
        values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = as_text(col)
        missing = is_empty(text).to_numpy(zero_copy_only=False)
        blanked = pc.if_else(pa.chunked_array([missing]), "0", text)
        try:
            values = pc.cast(blanked, pa.float64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            numeric = pc.fill_null(pc.match_substring_regex(text, _NUMBER), False)
            bad = ~(numeric.to_numpy(zero_copy_only=False) | missing)
            if not bad.any():
                raise InputError("value is not a number", file=file, column=column) from None
            row = first_bad_row(bad)
            raw = text[row - 1].as_py()
            message = (
                "value is not finite" if raw.lower() in _NOT_FINITE else "value is not a number"
            )
            raise InputError(f"{message}: {raw!r}", file=file, row=row, column=column) from None
        values = values.astype(np.float64)
        values[missing] = np.nan
    else:
        raise InputError(f"values must be numbers, not {kind}", file=file, column=column)
    if required and missing.any():
        raise InputError("missing value", file=file, row=first_bad_row(missing), column=column)
    not_finite = ~np.isfinite(values) & ~missing
    if not_finite.any():
        row = first_bad_row(not_finite)
        raise InputError(
            f"value is not finite: {values[row - 1]}", file=file, row=row, column=column
        )
    return values


def parse_event_types(col: pa.ChunkedArray, file: str, column: str) -> pa.ChunkedArray:
    """Lower-cased event types; a missing cell is "view", anything outside EVENT_TYPES an error."""
    text = pc.utf8_lower(as_text(col))
    text = pc.if_else(is_empty(text), "view", text)
    unknown = pc.invert(pc.is_in(text, value_set=pa.array(EVENT_TYPES)))
    if pc.any(unknown).as_py():
        row = first_bad_row(unknown)
        raise InputError(
            f"unknown event type {_text(text, row)} (allowed: {', '.join(EVENT_TYPES)})",
            file=file,
            row=row,
            column=column,
        )
    return text


def parse_released(col: pa.ChunkedArray, file: str, column: str) -> np.ndarray:
    """datetime64[s] from dates, datetimes, ISO strings or bare years; missing cells are NaT."""
    kind = col.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        stamps = pc.cast(col, pa.timestamp("s", getattr(kind, "tz", None)), safe=False)
        return stamps.to_numpy(zero_copy_only=False).astype("datetime64[s]")
    text = as_text(col)
    missing = is_empty(text).to_numpy(zero_copy_only=False)
    strings = pd.Series(text.to_numpy(zero_copy_only=False), dtype=object)
    years = pc.fill_null(pc.match_substring_regex(text, _YEAR), False).to_numpy(
        zero_copy_only=False
    )
    result = np.full(len(strings), np.datetime64("NaT"), dtype="datetime64[s]")
    result[years] = strings[years].to_numpy().astype("datetime64[Y]").astype("datetime64[s]")
    rest = ~(years | missing)
    if rest.any():
        parsed = pd.to_datetime(strings[rest], format="ISO8601", utc=True, errors="coerce")
        bad = np.zeros(len(strings), dtype=bool)
        bad[rest] = parsed.isna().to_numpy()
        if bad.any():
            row = first_bad_row(bad)
            raise InputError(
                f"unparseable date {_text(text, row)} (expected an ISO date or a year)",
                file=file,
                row=row,
                column=column,
            )
        result[rest] = parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[s]")
    return result


def parse_genres(col: pa.ChunkedArray) -> list[list[str]]:
    """Genre lists from pipe-separated strings or (parquet) lists of strings."""
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        rows = col.to_pylist()
    else:
        rows = pc.split_pattern(as_text(col), "|").to_pylist()
    return [[g.strip() for g in row if g and g.strip()] if row else [] for row in rows]


def first_duplicate(ids: pa.ChunkedArray) -> int | None:
    """1-based row of the first id that repeats an earlier one, or None."""
    duplicated = pd.Series(ids.to_numpy(zero_copy_only=False)).duplicated().to_numpy()
    return first_bad_row(duplicated) if duplicated.any() else None


# --- the canonical frames ----------------------------------------------------------------------


def make_items(columns: dict[str, object]) -> pd.DataFrame:
    """The items frame in RawCatalog's column order and dtypes."""
    frame = pd.DataFrame(columns)
    for name in ("item_id", "title", "description", "tags"):
        frame[name] = frame[name].astype(str)
    frame["series"] = frame["series"].astype(object).where(frame["series"].notna(), None)
    frame["series_position"] = frame["series_position"].astype(np.float64)
    frame["released"] = frame["released"].astype("datetime64[s]")
    return frame[ITEM_COLUMNS]


def make_events(
    user_id: pa.ChunkedArray,
    item_id: pa.ChunkedArray,
    timestamp: np.ndarray,
    event: pa.ChunkedArray | str,
    value: np.ndarray,
    device: pa.ChunkedArray | None,
    known_items: pd.Series,
) -> tuple[pd.DataFrame, int]:
    """The events frame, keeping only events of known items; also the count dropped."""
    known = pa.array(known_items.to_numpy(dtype=object), pa.string())
    keep = pc.is_in(item_id, value_set=known)
    keep_np = keep.to_numpy(zero_copy_only=False)
    n = int(keep_np.sum())
    dropped = len(keep_np) - n

    def kept(col: pa.ChunkedArray) -> pd.Series:
        # pandas keeps strings as large_string: cast once here rather than on conversion
        col = pc.filter(col, keep) if dropped else col
        return pc.cast(col, pa.large_string()).to_pandas()

    if device is None:
        devices = np.full(n, None, dtype=object)
    else:
        text = as_text(device)
        text = pc.if_else(is_empty(text), pa.scalar(None, text.type), text)
        devices = (pc.filter(text, keep) if dropped else text).to_numpy(zero_copy_only=False)
    events = pd.DataFrame(
        {
            "user_id": kept(user_id),
            "item_id": kept(item_id),
            "timestamp": timestamp[keep_np] if dropped else timestamp,
            "event": _repeat(event, n) if isinstance(event, str) else kept(event),
            "value": value[keep_np] if dropped else value,
        },
    )
    events["device"] = pd.Series(devices, dtype=object)
    return events[EVENT_COLUMNS], dropped


def _repeat(text: str, n: int) -> pd.Series:
    """A str column of n copies of one text, built without n Python objects."""
    data = text.encode()
    offsets = np.arange(n + 1, dtype=np.int64) * len(data)
    array = pa.Array.from_buffers(
        pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data * n)]
    )
    return array.to_pandas()
