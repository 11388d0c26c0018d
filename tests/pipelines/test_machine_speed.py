"""The fixed work a latency report is timed against, to compare reports of different days."""

import time

from pipelines.machine_speed import _median_ms, reference


def test_the_median_of_a_known_wait_is_that_wait() -> None:
    waits = iter([0.001, 0.004, 0.004, 0.030])  # the first call is the warm-up, not counted

    def work(_: int) -> None:
        time.sleep(next(waits))

    assert 4.0 <= _median_ms(work, 3) < 20.0


def test_the_reference_times_both_pieces_of_work() -> None:
    times = reference(repeats=3)
    assert set(times) == {"python_ms", "numpy_ms"}
    assert all(0 < ms < 10_000 for ms in times.values())
