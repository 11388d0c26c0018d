"""A fixed piece of work timed where a benchmark runs, so reports of different days compare.

On this shared machine the same code on the same kind of catalog answered at p50 14.2 ms one
day and 21.8 ms the next (1M items, every stage about 1.5 times slower). A latency report
carries what this work took when the report was made: the interpreter's part of a request
(dict and list glue, small sorts) and numpy's (random rows of a matrix larger than the cache,
times a vector, then the best of them), each the median of several runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

ROWS, DIM, GATHERED, KEPT = 65_536, 384, 3_000, 100  # 100 MB: larger than the CPU's caches
REPEATS = 9


def reference(repeats: int = REPEATS) -> dict[str, float]:
    """{'python_ms', 'numpy_ms'}: the median time of each fixed piece of work, milliseconds."""
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((ROWS, DIM), dtype=np.float32)
    vector = rng.standard_normal(DIM, dtype=np.float32)
    picks = [rng.choice(ROWS, GATHERED, replace=False) for _ in range(repeats)]

    def gather(n: int) -> None:
        scores = np.take(matrix, picks[n], axis=0) @ vector
        np.argpartition(-scores, KEPT)[:KEPT]

    return {
        "python_ms": _median_ms(_python_work, repeats),
        "numpy_ms": _median_ms(gather, repeats),
    }


def _python_work(n: int) -> None:
    counts: dict[int, int] = {}
    for i in range(20_000):
        key = (i * 7919 + n) % 1_000
        counts[key] = counts.get(key, 0) + i
    sorted(counts.items(), key=lambda pair: pair[1])


def _median_ms(work: Callable[[int], None], repeats: int) -> float:
    work(0)  # warm
    times = []
    for n in range(repeats):
        started = time.perf_counter()
        work(n)
        times.append((time.perf_counter() - started) * 1000)
    return round(float(np.median(times)), 3)
