"""How much of a file the page cache holds, and of a mapping this process has mapped in."""

from __future__ import annotations

import ctypes
import mmap
from pathlib import Path

import numpy as np


def cached_bytes(path: Path) -> int:
    """How many bytes of the file are in the page cache: mincore over a new mapping of it, which
    reads nothing (a read with RWF_NOWAIT would start the kernel's read-ahead of the file)."""
    size = path.stat().st_size
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    vector = ctypes.create_string_buffer(pages)
    with open(path, "rb") as file, mmap.mmap(file.fileno(), size, prot=mmap.PROT_READ) as mapping:
        view = np.frombuffer(mapping, dtype=np.uint8)
        status = libc.mincore(view.ctypes.data, size, vector)
        del view
    if status != 0:
        raise OSError(ctypes.get_errno(), "mincore failed")
    return sum(byte & 1 for byte in vector.raw) * mmap.PAGESIZE


def resident_bytes(matrix: np.ndarray) -> int:
    """How much of the mapping holding `matrix` this process has mapped in (smaps' Rss)."""
    address = matrix.ctypes.data
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            low, high = (int(part, 16) for part in head.split("-"))
            inside = low <= address < high
        elif inside and head == "Rss:":
            return int(line.split()[1]) * 1024
    raise AssertionError("no mapping holds the matrix")
