"""A build's scratch directories: its own removed when it ends, a dead build's at the next start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipelines.content_file import SCRATCH_PREFIX, remove_orphans, scratch_dir


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_builds_scratch_is_removed_and_a_running_ones_kept(tmp_path: Path) -> None:
    dead = tmp_path / f"{SCRATCH_PREFIX}{_dead_pid()}-000"
    (dead / "sub").mkdir(parents=True)
    (dead / "source_content_vector.npy").write_bytes(b"x" * 100)
    alive = tmp_path / f"{SCRATCH_PREFIX}{os.getppid()}-000"  # the process that runs pytest
    alive.mkdir()
    other = tmp_path / "versions"
    other.mkdir()
    with scratch_dir(tmp_path) as mine:
        assert mine.is_dir() and not dead.exists()
        assert alive.is_dir() and other.is_dir()
    assert not mine.exists() and alive.is_dir()
    assert remove_orphans(tmp_path) == []
