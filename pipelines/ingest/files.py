"""Reading input files into Arrow tables, shared by the input formats.

CSV and parquet files are read with pyarrow; every failure to read one is an `InputError` naming
the file and, for a malformed CSV file, the 1-based data row (header excluded) where it goes
wrong. The values are checked afterwards, column by column, by `validate`.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from app.errors import InputError


def csv_header(path: Path, *, encoding: str = "utf-8") -> list[str]:
    with path.open("r", encoding=encoding, errors="replace", newline="") as f:
        header = next(csv.reader(f), None)
    if not header or not any(h.strip() for h in header):
        raise InputError("the file is empty (no header row)", file=path.name)
    return [h.strip().lstrip("\ufeff") for h in header]


def read_csv(
    path: Path,
    names: list[str],
    wanted: list[str],
    *,
    header: bool = True,
    delimiter: str = ",",
    quoting: bool = True,
    encoding: str = "utf8",
    source: pa.Buffer | None = None,
    types: dict[str, pa.DataType] | None = None,
) -> pa.Table:
    """The `wanted` columns of a CSV file, as strings unless `types` says otherwise.

    `names` are the file's column names (its header, or given when `header=False`). `source`
    replaces the file's bytes (used for MovieLens `::` files rewritten to tabs). `types` is a
    fast path for large files: when a cell does not convert, the file is read again as strings,
    so that the column checks can name the bad row.
    """
    read = pacsv.ReadOptions(
        column_names=names, skip_rows=1 if header else 0, encoding=encoding, block_size=1 << 24
    )
    parse = pacsv.ParseOptions(delimiter=delimiter, quote_char='"' if quoting else False)

    def attempt(column_types: dict[str, pa.DataType]) -> pa.Table:
        convert = pacsv.ConvertOptions(
            include_columns=wanted, column_types=column_types, strings_can_be_null=False
        )
        return pacsv.read_csv(
            pa.BufferReader(source) if source is not None else path,
            read_options=read,
            parse_options=parse,
            convert_options=convert,
        )

    strings = {name: pa.string() for name in wanted}
    try:
        if types is not None:
            try:
                return attempt({**strings, **types})
            except (pa.ArrowException, UnicodeError):
                pass
        return attempt(strings)
    except (pa.ArrowException, UnicodeError) as exc:
        row = _malformed_row(path, len(names), header, delimiter, quoting, encoding, source)
        detail = str(exc).split("\n")[0]
        raise InputError(f"malformed CSV: {detail}", file=path.name, row=row) from None


def _malformed_row(
    path: Path,
    n_fields: int,
    header: bool,
    delimiter: str,
    quoting: bool,
    encoding: str,
    source: pa.Buffer | None,
) -> int | None:
    """Find the first data row with a wrong field count or bad encoding (error path only)."""
    row = 0
    with io.BytesIO(source.to_pybytes()) if source is not None else path.open("rb") as stream:
        if header:
            stream.readline()
        reader = csv.reader(
            (line.decode(encoding) for line in stream),
            delimiter=delimiter,
            quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE,
        )
        try:
            for fields in reader:
                if not fields:
                    continue  # pyarrow skips empty lines too, so they are not rows
                row += 1
                if len(fields) != n_fields:
                    return row
        except (UnicodeError, csv.Error):
            return row + 1
    return None


def read_parquet(path: Path, wanted: list[str]) -> tuple[pa.Table, list[str]]:
    """The `wanted` columns present in a parquet file, and all of the file's column names."""
    try:
        names = pq.read_schema(path).names
        table = pq.read_table(path, columns=[c for c in wanted if c in names])
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"unreadable parquet file: {exc}", file=path.name) from None
    return table, names


def read_table(path: Path, wanted: list[str]) -> tuple[pa.Table, list[str]]:
    """A CSV or parquet table (chosen by suffix) and all of its column names."""
    if path.suffix == ".parquet":
        return read_parquet(path, wanted)
    names = csv_header(path)
    present = [c for c in wanted if c in names]
    return read_csv(path, names, present), names
