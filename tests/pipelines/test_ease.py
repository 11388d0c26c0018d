"""EASE for the `ease` source: known answers on tiny matrices, lambda choice, serving layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pipelines import ease


def matrix(rows: list[list[float]]) -> sp.csr_matrix:
    return sp.csr_matrix(np.asarray(rows, dtype=np.float32))


def test_covered_items_need_two_users_and_take_the_widest_audiences():
    x = matrix([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 1], [0, 1, 0, 0]])
    # audiences: item 0: 3 users, item 1: 3, item 2: 1, item 3: 1
    assert ease.covered_items(x, 10).tolist() == [0, 1]
    assert ease.covered_items(x, 1).tolist() == [0]
    assert ease.covered_items(matrix([[1, 0], [0, 1]]), 10).tolist() == []


def test_weights_are_the_closed_form_with_a_zero_diagonal():
    rng = np.random.default_rng(0)
    x = sp.csr_matrix((rng.random((40, 6)) > 0.5).astype(np.float32))
    g = ease.gram(x, 100)
    b = ease.ease_weights(g, 3.0)
    p = np.linalg.inv(x.T.toarray() @ x.toarray() + 3.0 * np.eye(6))
    expected = np.eye(6) - p / np.diag(p)[None, :]
    np.testing.assert_allclose(b, expected, atol=1e-5)
    assert np.all(np.diag(b) == 0)
    with pytest.raises(ValueError, match="max_items"):
        ease.gram(x, 5)


def test_fit_puts_co_endorsed_items_first_in_catalog_indexes():
    # items 1 and 3 always go together; item 0 and 4 only with a few; item 2 has one user
    x = np.zeros((30, 5), np.float32)
    x[:20, 1] = x[:20, 3] = 1
    x[18:30, 0] = x[25:30, 4] = 1
    x[0, 2] = 1
    model = ease.fit(sp.csr_matrix(x), max_items=10, lambdas={"deep": 1.0, "top": 1.0})
    assert model is not None
    assert model.items.tolist() == [0, 1, 3, 4]  # item 2 has one user
    row = {item: n for n, item in enumerate(model.items.tolist())}
    assert np.argmax(model.deep[row[1]]) == row[3]
    assert np.argmax(model.deep[row[3]]) == row[1]
    assert model.deep.shape == (4, 4) and np.all(np.diag(model.deep) == 0)
    assert model.top is model.deep  # one lambda, one matrix
    other = ease.fit(sp.csr_matrix(x), max_items=10, lambdas={"deep": 10.0, "top": 1.0})
    assert other is not None
    np.testing.assert_allclose(other.top, model.deep, atol=1e-6)
    assert np.abs(other.deep).sum() < np.abs(other.top).sum()  # stronger regularisation


def test_fit_chooses_lambda_on_validation_and_records_the_grid():
    rng = np.random.default_rng(4)
    taste = rng.integers(0, 4, 200)
    x = np.zeros((200, 40), np.float32)
    for u, t in enumerate(taste):
        x[u, rng.choice(np.arange(t * 10, t * 10 + 10), 4, replace=False)] = 1
    valid = np.zeros_like(x)
    for u, t in enumerate(taste):
        unseen = [i for i in range(t * 10, t * 10 + 10) if x[u, i] == 0]
        valid[u, unseen[0]] = 1
    model = ease.fit(sp.csr_matrix(x), 100, None, sp.csr_matrix(valid), grid=(1.0, 100.0), depth=3)
    assert model is not None
    assert len(model.validation) == 2
    for criterion, metric in (("deep", "recall@3"), ("top", "ndcg@10")):
        chosen = model.validation[f"{model.lambdas[criterion]:.1f}"][metric]
        assert chosen == max(v[metric] for v in model.validation.values())
    # each item's strongest relations stay inside its taste group
    strongest = model.items[np.argsort(-model.top, axis=1)[:, :5]]
    assert (strongest // 10 == (model.items // 10)[:, None]).all()
    with pytest.raises(ValueError, match="lambdas"):
        ease.fit(sp.csr_matrix(x), 100)


def test_fit_on_events_tunes_on_an_inner_split_when_given_nothing():
    rng = np.random.default_rng(1)
    rows = []
    for u in range(60):
        group = u % 3
        for n, item in enumerate(rng.choice(np.arange(group * 8, group * 8 + 8), 6, False)):
            rows.append((u, int(item), 1_000 + n))
    events = pd.DataFrame(rows, columns=["user_index", "item_index", "timestamp"])
    events["user_id"] = events["user_index"].astype(str)
    weights = np.ones(len(events), np.float32)
    audience = sp.csr_matrix(
        (weights, (events["user_index"], events["item_index"])), shape=(60, 24)
    )
    model = ease.fit_on_events(
        audience, events, weights, lambdas=None, valid=None, max_items=100, holdout=0.2, depth=5
    )
    assert model is not None and min(model.lambdas.values()) > 0
    assert not model.validation  # the final fit, with the lambdas the inner split chose
    strongest = model.items[np.argsort(-model.deep, axis=1)[:, :3]]
    assert (strongest // 8 == (model.items // 8)[:, None]).all()
