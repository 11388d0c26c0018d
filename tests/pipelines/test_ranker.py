"""The stage-2 ranker's training: folds averaged, shipped only when it beats stage 1's order."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.features import FEATURE_NAMES
from app.ranking import MODEL_FILE, Ranker, RankingConfig
from pipelines.ranker import RankerData, ndcg_at, train_ranker

USERS, PER_USER = 120, 40


def _data(signal_in_features: bool, seed: int = 0) -> RankerData:
    """Per user 40 candidates, 4 relevant. Either one feature reveals them (and stage 1's order
    is random) or nothing does (and stage 1's order puts them first)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(USERS * PER_USER, len(FEATURE_NAMES))).astype(np.float32)
    labels = np.zeros(USERS * PER_USER, dtype=np.float32)
    groups = np.repeat(np.arange(USERS), PER_USER)
    stage1 = np.tile(np.arange(1, PER_USER + 1), USERS).astype(np.float32)
    for u in range(USERS):
        rows = np.arange(u * PER_USER, (u + 1) * PER_USER)
        relevant = rng.choice(rows, 4, replace=False)
        labels[relevant] = 1.0
        if signal_in_features:
            x[relevant, FEATURE_NAMES.index("cf_dot")] += 3.0
            stage1[rows] = rng.permutation(PER_USER) + 1
        else:
            others = np.setdiff1d(rows, relevant)
            stage1[relevant] = np.arange(1, 5)
            stage1[others] = np.arange(5, PER_USER + 1)
    return RankerData(x, labels, groups, stage1)


def _train(data: RankerData, out: Path) -> dict:
    return train_ranker(
        data, out, iterations=60, depth=4, learning_rate=0.1, seed=3, threads=1, folds=3
    )


def test_a_ranker_that_finds_the_signal_ships_as_the_average_of_its_folds(tmp_path: Path) -> None:
    data = _data(signal_in_features=True)
    info = _train(data, tmp_path)
    assert info["shipped"] and info["folds"] == 3 and len(info["trees_per_fold"]) == 3
    assert info["valid_ndcg@10"] > 0.9 > info["valid_ndcg@10_stage1_order"]
    model = Ranker.load_model(tmp_path)
    assert model is not None and model.tree_count_ == sum(info["trees_per_fold"])
    fresh = _data(signal_in_features=True, seed=1)
    assert ndcg_at(fresh.labels, model.predict(fresh.features), fresh.groups) > 0.9
    # serving hands CatBoost column-major float64 (quicker to read): the same scores, NaN too
    features = fresh.features.copy()
    features[::7, FEATURE_NAMES.index("cf_dot")] = np.nan
    ranker = Ranker(RankingConfig(), None, model)  # type: ignore[arg-type]
    np.testing.assert_array_equal(ranker.predict(features), model.predict(features))


def test_a_ranker_no_better_than_stage_one_is_not_shipped(tmp_path: Path) -> None:
    info = _train(_data(signal_in_features=False), tmp_path)
    assert not info["shipped"] and info["file"] is None
    assert info["valid_ndcg@10_stage1_order"] == 1.0
    assert not (tmp_path / MODEL_FILE).exists()
    assert Ranker.load_model(tmp_path) is None


def test_training_is_reproducible(tmp_path: Path) -> None:
    data = _data(signal_in_features=True)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = _train(data, tmp_path / "a"), _train(data, tmp_path / "b")
    assert first == second
    models = [Ranker.load_model(tmp_path / name) for name in ("a", "b")]
    scores = [m.predict(data.features) for m in models if m is not None]
    assert len(scores) == 2 and np.array_equal(scores[0], scores[1])
