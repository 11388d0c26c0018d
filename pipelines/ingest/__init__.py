"""Reading input data sets into a RawCatalog (see `raw` for the column contract).

    catalog = load_source(Path("datasets/ml-latest-small"), "movielens")

Formats: "movielens" (a MovieLens directory as distributed: CSV layout, ml-100k or ml-1m) and
"generic" (items + events as CSV or parquet). Bad input raises `InputError` naming the file,
the 1-based data row and the column; events of unknown items are dropped and counted.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from app.errors import InputError
from pipelines.ingest.generic import load_generic
from pipelines.ingest.movielens import load_movielens
from pipelines.ingest.raw import RawCatalog

FORMATS = {"movielens": load_movielens, "generic": load_generic}

__all__ = ["FORMATS", "RawCatalog", "load_source"]


def load_source(path: Path, fmt: str, scratch: Path | None = None) -> RawCatalog:
    """`scratch`: a build's scratch directory (pipelines.content_file), where the source's content
    vectors are written as a memory-mapped `.npy`; without one they are read into memory."""
    load = FORMATS.get(fmt)
    if load is None:
        raise InputError(f"unknown input format {fmt!r} (allowed: {', '.join(FORMATS)})")
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"not a directory: {path}", file=str(path))
    catalog = load(path, scratch)
    # Arrow's allocator keeps the buffers of the parsed files for reuse: about 1 GB at 10M events.
    pa.default_memory_pool().release_unused()
    return catalog
