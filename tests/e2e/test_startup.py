"""`shortlist serve` on a broken catalog: one clear line and a non-zero exit, no traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.store import CatalogRoot
from tests.conftest import ROOT
from tests.e2e.serve import free_port


def _serve(root: Path) -> subprocess.CompletedProcess[str]:
    command = ["-c", "from pipelines.cli import main; main()", "serve", "--db", str(root)]
    return subprocess.run(
        [sys.executable, *command, "--port", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda version: (version / "ranker.cbm").unlink(), "lacks ranker.cbm"),
        (lambda version: (version / "ranker.cbm").write_bytes(b"not a model"), "unreadable"),
        (lambda version: (version / "item_neighbours.npy").write_bytes(b"junk"), "unreadable"),
        (lambda version: shutil.rmtree(version / "items.lance"), "table 'items' is missing"),
    ],
    ids=["missing-ranker", "corrupt-ranker", "corrupt-neighbours", "missing-items"],
)
def test_a_broken_catalog_stops_the_server_with_one_line(
    built_catalog: Path, tmp_path: Path, damage, said
) -> None:
    root = tmp_path / "shortlist.lancedb"
    shutil.copytree(built_catalog, root, ignore=shutil.ignore_patterns("live"))
    damage(CatalogRoot(root).versions_dir / str(CatalogRoot(root).current()))
    result = _serve(root)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    reasons = [line for line in result.stderr.splitlines() if "cannot start:" in line]
    assert len(reasons) == 1 and said in reasons[0], result.stderr
