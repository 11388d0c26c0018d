"""A build's content vectors as one float32 `.npy` file, memory-mapped, never whole in the heap.

At 10M items the (n, 384) float32 matrix is 15 GB: ingest writes the source's vectors into a file
in the build's scratch directory (on the catalog root's filesystem, so the finished file is
renamed into the version directory, never copied), the text model fills the rows the source left
empty, and every later step reads the mapped file. Every pass over all rows goes in chunks of
CHUNK_ROWS (96 MB at 384 floats), so the heap holds one chunk at a time.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from app.store import process_running

CHUNK_ROWS = 65_536
SCRATCH_PREFIX = ".build-"  # a build's scratch directory in the catalog root


@contextmanager
def scratch_dir(root: Path) -> Iterator[Path]:
    """A fresh directory in the catalog root for one build's scratch files, removed afterwards
    (whether the build succeeded or failed): not /tmp, which at 10M items would need 15 GB and
    could not rename the file into the version directory. Scratch directories of builds that
    died without cleaning up (SIGKILL, the OOM killer) are removed first."""
    root.mkdir(parents=True, exist_ok=True)
    remove_orphans(root)
    for n in range(1000):
        path = root / f"{SCRATCH_PREFIX}{os.getpid()}-{n:03d}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        break
    else:
        raise OSError(f"cannot make a scratch directory in {root}")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_orphans(root: Path) -> list[Path]:
    """Remove the scratch directories in `root` whose build process no longer runs on this
    machine; the removed paths."""
    removed = []
    for path in root.glob(f"{SCRATCH_PREFIX}*"):
        pid = path.name[len(SCRATCH_PREFIX) :].partition("-")[0]
        if pid.isdigit() and not process_running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def allocate(rows: int, dim: int, file: Path | None) -> np.ndarray:
    """An uninitialised (rows, dim) float32 matrix: mapped onto a new `.npy` at `file`, or in
    memory without one (small catalogs read by tools that keep no catalog root)."""
    if file is None:
        return np.empty((rows, dim), dtype=np.float32)
    return np.lib.format.open_memmap(file, mode="w+", dtype=np.float32, shape=(rows, dim))


def is_scratch(vectors: np.ndarray | None, scratch: Path | None) -> bool:
    """Whether `vectors` is a writable file in `scratch`: the build's own, to fill and move."""
    return (
        scratch is not None
        and isinstance(vectors, np.memmap)
        and vectors.filename is not None
        and vectors.mode in ("r+", "w+")
        and Path(vectors.filename).parent.resolve() == scratch.resolve()
    )


def flush(vectors: np.ndarray) -> None:
    """Write a mapped matrix's changes to its file (nothing for one in memory)."""
    if isinstance(vectors, np.memmap):
        vectors.flush()


def fill_rows(out: np.ndarray, start: int, stop: int, value: float = np.nan) -> None:
    for lo in range(start, stop, CHUNK_ROWS):
        out[lo : min(stop, lo + CHUNK_ROWS)] = value


def copy_rows(source: np.ndarray, out: np.ndarray) -> None:
    """`out[:len(source)] = source`, a chunk at a time."""
    for lo in range(0, len(source), CHUNK_ROWS):
        hi = min(len(source), lo + CHUNK_ROWS)
        out[lo:hi] = source[lo:hi]


def nan_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows holding a NaN (no vector given), checked a chunk at a time."""
    out = np.empty(len(vectors), dtype=bool)
    for lo in range(0, len(vectors), CHUNK_ROWS):
        out[lo : lo + CHUNK_ROWS] = np.isnan(vectors[lo : lo + CHUNK_ROWS]).any(axis=1)
    return out


def settle(
    vectors: np.ndarray | None, out: Path, scratch: Path | None, rows: int, dim: int
) -> np.ndarray:
    """`vectors` as a writable mapped file at `out`: the build's scratch file is moved there
    (same filesystem: a rename), any other array copied in chunks; None gives an uninitialised
    (rows, dim) file."""
    if isinstance(vectors, np.memmap) and is_scratch(vectors, scratch):
        vectors.flush()
        os.replace(str(vectors.filename), out)
        return np.load(out, mmap_mode="r+", allow_pickle=False)
    mapped = allocate(rows, dim, out)
    if vectors is not None:
        copy_rows(vectors, mapped)
    return mapped


def open_read(path: Path) -> np.ndarray:
    """The file mapped read-only."""
    return np.load(path, mmap_mode="r", allow_pickle=False)
