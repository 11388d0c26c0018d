"""The serving heap: what a loaded version allocates stays out of the cycle collector's way.

A loaded version is hundreds of thousands of long-lived Python objects (Arrow and LanceDB
handles, CatBoost, id maps). Every request allocates thousands of short-lived ones (source hits,
features), so CPython's full (generation 2) collection runs every few dozen requests and walks
all of them: on ml-latest-small that was the 1% of requests that spent 100+ ms in the candidate
stage outside any source. `gc.freeze()` moves what is alive after a load into the permanent
generation, which collections skip; unfreezing first lets the previous version's cycles go.

While a server runs (`serving`), the young generation is collected after YOUNG net allocations
instead of CPython's 700. A request holds a few thousand objects at its peak (GraphQL results,
features, hits) and frees them by reference counting; at 700 each request set off about four
young collections, and every tenth of those an older one, each walking whatever the requests in
flight still held (measured on ml-latest-small: about 0.7 ms of CPU per request, and a 3-4 ms
pause every 30 requests). Cycles are still collected, just in larger, rarer batches.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa

YOUNG = 10_000


def settle() -> None:
    """Collect once, then exempt everything alive from future collections (after a load), and
    hand the memory the load freed back to the system."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    release_free_memory()


def release_free_memory() -> None:
    """Hand what the process freed back to the system. Loading a version frees gigabytes in small
    pieces that glibc keeps for itself (malloc_trim: at 1M items a runtime held 7.2 GB after
    loading, 4.6 GB after the trim), and Arrow's allocator keeps the buffers of Arrow arrays
    computed and dropped (a build's steps, items upserted while serving) for reuse."""
    pa.default_memory_pool().release_unused()
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return
    trim(0)


@contextmanager
def serving() -> Iterator[None]:
    """Collect the young generation every YOUNG net allocations while inside; the thresholds
    before are restored on the way out."""
    previous = gc.get_threshold()
    gc.set_threshold(max(YOUNG, previous[0]), *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)
