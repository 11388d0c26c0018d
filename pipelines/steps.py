"""Progress and one-line summaries for long offline steps.

Every long step runs inside `reporter.step(name, total=...)`; it shows a rich progress bar while it
runs and prints one summary line when it ends: `✓ embed  9,742 rows  12.3 s  peak 1,204 MiB`.
Each timing also carries the step's peak resident memory and what it still held at its end (MiB),
so a build's manifest shows which step holds what.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipelines.resident_memory import PeakResident, resident


@dataclass
class Step:
    """A running step: call `advance(n)` as work is done, set `rows` for the summary."""

    name: str
    rows: int = 0
    note: str = ""
    _progress: Progress | None = None
    _task: int | None = None

    def advance(self, n: int = 1) -> None:
        self.rows += n
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)  # type: ignore[arg-type]

    def set_total(self, total: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=total)  # type: ignore[arg-type]


@dataclass
class StepTiming:
    name: str
    rows: int
    seconds: float
    note: str = ""
    peak_rss_mib: float = 0.0  # the most the process held during the step
    rss_mib: float = 0.0  # what it held when the step ended
    peak_anon_mib: float = 0.0  # the most of its own memory, mapped files' pages left out


@dataclass
class Reporter:
    """Shows progress bars and collects per-step timings. `quiet=True` prints nothing (tests)."""

    quiet: bool = False
    console: Console = field(default_factory=lambda: Console(stderr=True))
    timings: list[StepTiming] = field(default_factory=list)

    @contextmanager
    def step(self, name: str, total: int | None = None) -> Iterator[Step]:
        started = time.perf_counter()
        with PeakResident() as peak, self._shown(name, total) as step:
            yield step
        seconds = time.perf_counter() - started
        self.timings.append(
            StepTiming(
                name,
                step.rows,
                seconds,
                step.note,
                round(peak.mib, 1),
                round(peak.end_mib, 1),
                round(peak.anon_mib, 1),
            )
        )
        if not self.quiet:
            note = f"  {step.note}" if step.note else ""
            self.console.print(
                f"[green]✓[/green] {name:<12} {step.rows:>12,} rows  {seconds:8.2f} s"
                f"  peak {peak.mib:,.0f} MiB ({peak.anon_mib:,.0f} own){note}"
            )

    def peak_rss_mib(self) -> float:
        """The most the process has held: its high-water mark, or a step's sample above it (the
        kernel updates the mark lazily)."""
        return round(max([resident().hwm, *(t.peak_rss_mib for t in self.timings)]), 1)

    @contextmanager
    def _shown(self, name: str, total: int | None) -> Iterator[Step]:
        if self.quiet:
            yield Step(name)
        else:
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            ) as progress:
                task = progress.add_task(name, total=total)
                yield Step(name, _progress=progress, _task=task)
