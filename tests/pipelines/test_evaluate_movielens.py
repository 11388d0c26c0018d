"""ml-latest-small: the build of its training split, and the served pipeline against the
baselines on its held-out future (fixed seeds, default settings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import Settings
from app.store import CatalogRoot
from pipelines.evaluation.run import evaluate
from tests.conftest import ROOT, ml_small_or_skip


@pytest.fixture(scope="module")
def movielens(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    source = ml_small_or_skip()
    out = tmp_path_factory.mktemp("ml_eval")
    return evaluate(source, "movielens", out, k=10, settings=Settings()), out


@pytest.mark.slow
def test_movielens_training_split_builds(movielens) -> None:
    _, out = movielens
    root = out / "catalog.lancedb"
    manifest = CatalogRoot(root).open().manifest
    assert manifest.counts["items"] == 9742
    assert 600 <= manifest.counts["users"] <= 610
    assert 70_000 < manifest.counts["events"] < 100_836  # the held-out 20% is not built
    assert manifest.text_model == "packaged:all-MiniLM-L6-v2"
    assert manifest.ranker is not None and manifest.fusion is not None
    assert manifest.relations["ease"]["items"] > 3000
    items = CatalogRoot(root).open().table("items").to_pandas().set_index("item_id")
    assert items.loc["1", "title"] == "Toy Story (1995)"
    assert items.loc["3114", "series"] == items.loc["1", "series"]  # Toy Story 2
    assert items.loc["3114", "series_position"] == 2
    info = subprocess.run(
        [sys.executable, "-c", "from pipelines.cli import main; main()", "info", "--db", str(root)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert json.loads(info.stdout)["version"] == manifest.version


@pytest.mark.slow
def test_movielens_served_pipeline_beats_the_baselines(movielens) -> None:
    report, _ = movielens
    ndcg = {row["method"]: row["ndcg@10"] for row in report["results"]}
    simple = ("popularity", "als", "ease", "item_knn", "content")
    best = max(ndcg[baseline] for baseline in simple)
    # The target. Two runs of this code measured 1.21x and 1.20x (and the ranker +9%, +8%);
    # before the ranker became an average of fold models, runs of identical code swung from 1.18x
    # to 1.10x.
    assert ndcg["shortlist"] >= 1.10 * best
    assert ndcg["shortlist"] > ndcg["shortlist without ranker"]
    deep = {row["method"]: row.get("recall@1000") for row in report["results"]}
    assert deep["shortlist"] >= max(deep[baseline] for baseline in simple)
