"""Shared fixtures: real generated catalogs, real builds in tmp directories, the real ASGI app."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LANCE_LOG", "error")

ROOT = Path(__file__).resolve().parents[1]
ML_SMALL = ROOT.parent / "shared" / "datasets" / "ml-latest-small"


def ml_small_or_skip() -> Path:
    if not ML_SMALL.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the MovieLens copy at {ML_SMALL}")
        pytest.skip(f"no MovieLens copy at {ML_SMALL}")
    return ML_SMALL


@pytest.fixture(scope="session")
def generated_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated catalog with content vectors (no text model needed to build it)."""
    from pipelines.generate import generate_catalog

    out = tmp_path_factory.mktemp("generated")
    generate_catalog(out, items=3000, users=600, seed=11, with_vectors=True)
    return out


@pytest.fixture(scope="session")
def built_catalog(tmp_path_factory: pytest.TempPathFactory, generated_source: Path) -> Path:
    """The generated catalog built with default settings (ranker included) into a tmp root."""
    from app.settings import Settings
    from pipelines.build import build

    root = tmp_path_factory.mktemp("catalog") / "shortlist.lancedb"
    build(
        generated_source,
        "generic",
        Settings(db_path=root, ranker_iterations=200, ranker_max_users=300, ranker_negatives=100),
    )
    return root
