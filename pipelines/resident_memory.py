"""How much memory a step holds: the process's resident set, read from /proc/self/status.

The kernel keeps the process's high-water mark (VmHWM) but not a step's, and resetting it
(/proc/self/clear_refs) would also reset the peak `time -v` and the scale bench report. So a step
samples VmRSS on a thread, and where the step raised the process's high-water mark, that mark is
its exact peak. On systems without /proc every reading is 0.
"""

from __future__ import annotations

import gc
import pickle
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.heap import release_free_memory

STATUS = Path("/proc/self/status")
SAMPLE_SECONDS = 0.1


@dataclass(frozen=True)
class Resident:
    """The process's resident set now (`rss`) and its high-water mark so far (`hwm`), in MiB;
    `anon`: the part of `rss` that is the process's own memory (RssAnon), without the pages of
    mapped files (RssFile: the content vectors' `.npy`, read by page, which the kernel drops
    under pressure and every process mapping the file shares)."""

    rss: float
    hwm: float
    anon: float = 0.0


def resident() -> Resident:
    try:
        lines = STATUS.read_text().splitlines()
    except OSError:
        return Resident(0.0, 0.0)
    kib = {
        key: float(rest.split()[0])
        for key, _, rest in (line.partition(":") for line in lines)
        if key in ("VmRSS", "VmHWM", "RssAnon")
    }
    return Resident(
        kib.get("VmRSS", 0.0) / 1024, kib.get("VmHWM", 0.0) / 1024, kib.get("RssAnon", 0.0) / 1024
    )


class PeakResident:
    """Within `with PeakResident() as peak:`, samples the resident set; afterwards `peak.mib`
    is the most the process held during the block and `peak.end_mib` what it held at its end;
    `peak.anon_mib` the most of its own memory (RssAnon) sampled, without mapped files' pages
    (the kernel keeps no high-water mark of it: a spike shorter than a sample can be missed)."""

    def __init__(self, every: float = SAMPLE_SECONDS) -> None:
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-resident", daemon=True)
        self._start = resident()
        self._sampled = self._start.rss
        self._anon = self._start.anon
        self.mib = 0.0
        self.end_mib = 0.0
        self.anon_mib = 0.0

    def _sample(self) -> None:
        while not self._stop.wait(self._every):
            now = resident()
            self._sampled = max(self._sampled, now.rss)
            self._anon = max(self._anon, now.anon)

    def __enter__(self) -> PeakResident:
        self._start = resident()
        self._sampled = self._start.rss
        self._anon = self._start.anon
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        end = resident()
        self.end_mib = end.rss
        # A new high-water mark was set during the block: that mark is the block's exact peak.
        raised = end.hwm > self._start.hwm
        self.mib = max(self._sampled, end.rss, end.hwm if raised else 0.0)
        self.anon_mib = max(self._anon, end.anon)


def hand_back() -> None:
    """Return what the process freed to the system: after a step that loaded a whole serving
    runtime (the ranker's training data), glibc and Arrow's allocator keep gigabytes of freed
    pieces for themselves, and the steps after it would run on top of them."""
    gc.collect()
    release_free_memory()


@contextmanager
def set_aside(holder: Any, names: tuple[str, ...], directory: Path) -> Iterator[None]:
    """Inside the block, `holder`'s attributes `names` are written to a file in `directory` and
    replaced by empty frames of the same columns, their memory handed back; on the way out
    (an error included) they are read back and the file removed.

    For a step that needs the memory more than the build needs the frames for a while: the
    ranker data step loads a whole serving runtime (14 GB at 10M items) beside the build's
    items and events (about 5 GB at 10M, mostly text)."""
    path = directory / "set_aside.pickle"
    with path.open("wb") as out:
        pickle.dump({name: getattr(holder, name) for name in names}, out, protocol=5)
    for name in names:
        setattr(holder, name, getattr(holder, name).iloc[:0])
    hand_back()
    try:
        yield
    finally:
        with path.open("rb") as file:
            for name, value in pickle.load(file).items():
                setattr(holder, name, value)
        path.unlink()
