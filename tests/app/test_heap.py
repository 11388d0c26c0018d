"""After a load, what is alive is out of the cycle collector's reach; old cycles still go."""

from __future__ import annotations

import gc
import weakref

from app import heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cycle collector frees it


def test_settle_freezes_the_living_and_frees_the_previous_versions_cycles() -> None:
    try:
        kept = _Node()
        heap.settle()
        assert gc.get_freeze_count() > 0
        # a frozen object is skipped by collections: its cycle outlives being dropped
        frozen = weakref.ref(kept)
        del kept
        gc.collect()
        assert frozen() is not None
        # the next load's settle unfreezes first, so the old version's cycles are collected
        heap.settle()
        assert frozen() is None
    finally:
        gc.unfreeze()


def test_serving_collects_the_young_generation_less_often_and_restores_it() -> None:
    before = gc.get_threshold()
    with heap.serving():
        assert gc.get_threshold()[0] >= heap.YOUNG
        assert gc.get_threshold()[1:] == before[1:]
    assert gc.get_threshold() == before


def _resident_mib() -> float:
    with open("/proc/self/status") as status:
        line = next(row for row in status if row.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def test_release_free_memory_hands_back_what_arrow_freed() -> None:
    """Arrow's allocator keeps freed buffers (a loaded items table's decoded columns) for reuse:
    300 MiB of Arrow arrays, dropped, still count in the process's resident memory until the
    release (without Arrow's release, glibc's trim alone leaves them resident)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays = [pc.add(pa.array(np.arange(1 << 17, dtype=np.int64)), 1) for _ in range(300)]
    assert pa.total_allocated_bytes() >= 300 << 20
    del arrays
    gc.collect()
    before = _resident_mib()
    heap.release_free_memory()
    assert before - _resident_mib() > 200
