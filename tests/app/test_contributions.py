import numpy as np
import pytest
from catboost import CatBoostRanker, Pool, sum_models

from app.contributions import TreeContributions


def ranking_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relevance driven by features 1 and 3; the others are noise; some values missing."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 5))
    x[rng.random(x.shape) < 0.1] = np.nan
    signal = np.nan_to_num(x[:, 1]) + 0.5 * np.nan_to_num(x[:, 3]) ** 2
    labels = np.clip(np.round(signal + 1.0), 0, 3)
    return x, labels, np.repeat(np.arange(60), 10)


def fitted(depth: int, seed: int) -> CatBoostRanker:
    x, labels, groups = ranking_data(seed)
    model = CatBoostRanker(
        loss_function="YetiRank",
        iterations=40,
        depth=depth,
        random_seed=seed,
        verbose=False,
        allow_writing_files=False,  # no catboost_info/ in the working directory
    )
    return model.fit(Pool(x, labels, group_id=groups))


def catboost_approximate(model: CatBoostRanker, x: np.ndarray) -> np.ndarray:
    shap = model.get_feature_importance(Pool(x), type="ShapValues", shap_calc_type="Approximate")
    return np.asarray(shap)[:, :-1]


@pytest.mark.parametrize("depth", [1, 4, 6])
def test_equal_to_catboost_approximate_shap_values(depth: int) -> None:
    model = fitted(depth, seed=depth)
    x, _, _ = ranking_data(99)
    ours = TreeContributions.of(model, 5)(x[:50])
    np.testing.assert_allclose(ours, catboost_approximate(model, x[:50]), atol=1e-9)


def test_a_fold_average_of_trees_of_different_depths() -> None:
    """The shipped ranker is `sum_models` of fold models; shallower trees are padded."""
    model = sum_models([fitted(3, seed=1), fitted(5, seed=2)], weights=[0.5, 0.5])
    x, _, _ = ranking_data(7)
    explain = TreeContributions.of(model, 5)
    ours = explain(x[:40])
    np.testing.assert_allclose(ours, catboost_approximate(model, x[:40]), atol=1e-9)
    # each row's contributions sum to its score less the model's mean score
    shap = model.get_feature_importance(Pool(x[:40]), type="ShapValues")
    mean = np.asarray(shap)[0, -1]
    np.testing.assert_allclose(ours.sum(axis=1) + mean, model.predict(x[:40]), atol=1e-9)


def test_the_features_that_drive_relevance_get_the_credit() -> None:
    model = fitted(4, seed=3)
    x, _, _ = ranking_data(11)
    share = np.abs(TreeContributions.of(model, 5)(x)).sum(axis=0)
    assert set(np.argsort(-share)[:2].tolist()) == {1, 3}


def test_no_rows_no_contributions() -> None:
    assert TreeContributions.of(fitted(2, seed=0), 5)(np.zeros((0, 5))).shape == (0, 5)
