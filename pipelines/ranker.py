"""Training the stage-2 ranker on what stage 1 really produces.

A snapshot catalog is built from each user's earlier events (temporal split); the serving
pipeline's own candidate stage is asked for each sampled user at the moment of their first
later event; features come from app.features (the module serving uses); labels are the
endorsement weight of the later events (a 5-star rating outranks a view, a 1-star rating is 0).
A CatBoost YetiRank model is fitted with early stopping on held-out users.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.candidates.fusion import Calibrated, fit_calibrated
from app.candidates.sources import SOURCES
from app.domain import RecommendationRequest
from app.events import event_weights
from app.features import FEATURE_NAMES, assemble
from app.pipeline import Pipeline, PipelineConfig
from app.quantized_rows import CONTENT_INT8_ABOVE
from app.ranking import MODEL_FILE
from app.runtime import Runtime
from app.store import CatalogVersion
from pipelines.scale import CATALOG_SCALE_ITEMS
from pipelines.steps import Step


@dataclass
class RankerData:
    features: np.ndarray
    labels: np.ndarray
    groups: np.ndarray  # user number per row, rows of a group contiguous
    stage1_rank: np.ndarray  # 1-based fused stage-1 position per row
    fusion: Calibrated | None = None  # the stage-1 fusion measured on the same snapshot


FUSION_USERS = 500  # users whose full candidate union measures the fusion
# At catalog scale one user's candidates cost about 0.35 s (1M items, 2 cores), so the ranker
# data of 3,000 users plus the fusion's 500 took 21 minutes. Above SCALE_MIN_ITEMS items at most
# SCALE_MAX_USERS users are sampled for training and SCALE_FUSION_USERS for the fusion; smaller
# catalogs (ml-latest-small: 610 users) are sampled as before.
SCALE_MIN_ITEMS = CATALOG_SCALE_ITEMS
SCALE_MAX_USERS = 800
SCALE_FUSION_USERS = 250
OFFLINE_DEADLINE_MS = 10_000.0  # offline, a slow source is waited for, not dropped


def offline_config(max_candidates: int | None = None) -> PipelineConfig:
    """The served pipeline config with deadlines no offline run will meet."""
    sources = {name: {"deadline_ms": OFFLINE_DEADLINE_MS} for name in SOURCES}
    candidates: dict[str, object] = {**sources}
    if max_candidates is not None:
        candidates["max_candidates"] = max_candidates
    return PipelineConfig.model_validate(
        {
            "budget_ms": 10 * OFFLINE_DEADLINE_MS,
            "candidates_ms": OFFLINE_DEADLINE_MS,
            "ranking_ms": OFFLINE_DEADLINE_MS,
            "reranking_ms": OFFLINE_DEADLINE_MS,
            "candidates": candidates,
        }
    )


@dataclass
class _Moment:
    request: RecommendationRequest
    gain: pd.Series  # endorsement weight of each item the user engaged with later


def _moments(later: pd.DataFrame, users: set[str], rating_max: float) -> dict[str, _Moment]:
    """Each user's first later event (when they are asked) and what they endorsed later."""
    moments = {}
    for user_id, events in later.groupby("user_id", sort=False):
        if user_id not in users:
            continue
        first = events.iloc[int(np.argmin(events["timestamp"].to_numpy()))]
        at = datetime.fromtimestamp(int(first["timestamp"]), tz=UTC)
        device = first["device"] if isinstance(first["device"], str) else None
        weights = event_weights(events["event"].to_numpy(), events["value"].to_numpy(), rating_max)
        moments[str(user_id)] = _Moment(
            RecommendationRequest(user_id=str(user_id), count=30, at=at, device=device),
            pd.Series(weights).groupby(events["item_id"].to_numpy()).max(),
        )
    return moments


async def _measure_fusion(
    runtime: Runtime, moments: dict[str, _Moment], users: list[str]
) -> Calibrated:
    """Hit rates of every source's hits, from the full union of candidates (nothing cut)."""
    stage = Pipeline.assemble(offline_config(max_candidates=10_000), runtime).candidates
    found, endorsed = [], []
    for user_id in users:
        moment = moments[user_id]
        union = (await stage(moment.request, runtime.users.state(user_id))).candidates
        labels = moment.gain.reindex(runtime.items.ids[union.items]).fillna(0.0).to_numpy()
        found.append(union.hits)
        endorsed.append(labels > 0)
    return fit_calibrated(found, endorsed)


async def _collect(
    runtime: Runtime,
    later: pd.DataFrame,
    users: list[str],
    rating_max: float,
    negatives: int,
    rng: np.random.Generator,
    step: Step | None,
    fusion_users: int = FUSION_USERS,
) -> RankerData:
    moments = _moments(later, set(users), rating_max)
    sample = sorted(rng.choice(users, size=min(fusion_users, len(users)), replace=False))
    fusion = await _measure_fusion(runtime, moments, sample)
    pipeline = Pipeline.assemble(offline_config(), replace(runtime, fusion=fusion))
    xs, ys, gs, rs = [], [], [], []
    for group, user_id in enumerate(users):
        moment = moments[user_id]
        user = pipeline.user_state(user_id)
        output = await pipeline.candidates(moment.request, user)
        candidates = output.candidates
        if step is not None:
            step.advance(1)
        if not len(candidates):
            continue
        item_ids = runtime.items.ids[candidates.items]
        labels = moment.gain.reindex(item_ids).fillna(0.0).to_numpy(dtype=np.float32)
        if labels.max() <= 0 or labels.min() == labels.max():
            continue  # nothing to learn from this user
        # Every labelled candidate, and a uniform sample of the rest: pairs stay informative
        # while the data stays small.
        zero = np.flatnonzero(labels == 0)
        keep = np.sort(
            np.r_[
                np.flatnonzero(labels > 0),
                rng.choice(zero, min(negatives, len(zero)), replace=False),
            ]
        )
        at, device = moment.request.at, moment.request.device
        features = assemble(at, device, user, candidates, runtime.items, runtime.relations)
        xs.append(features[keep])
        ys.append(labels[keep])
        gs.append(np.full(len(keep), group, dtype=np.int64))
        rs.append((keep + 1).astype(np.float32))
    if not xs:
        empty = np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
        return RankerData(empty, np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0), fusion)
    return RankerData(
        np.vstack(xs), np.concatenate(ys), np.concatenate(gs), np.concatenate(rs), fusion
    )


def collect_training_data(
    snapshot: CatalogVersion,
    later: pd.DataFrame,
    max_users: int,
    rating_max: float,
    rng: np.random.Generator,
    negatives: int = 300,
    step: Step | None = None,
    content_int8_above: int = CONTENT_INT8_ABOVE,
) -> RankerData:
    """Features and labels of the snapshot's candidates for users with later events, from the
    snapshot's runtime opened as serving opens it (`content_int8_above` as the setting)."""
    users = sorted(set(later["user_id"]) & set(_known_users(snapshot)))
    fusion_users = FUSION_USERS
    if snapshot.manifest.counts.get("items", 0) > SCALE_MIN_ITEMS:
        max_users = min(max_users, SCALE_MAX_USERS)
        fusion_users = SCALE_FUSION_USERS
    if len(users) > max_users:
        users = sorted(rng.choice(users, size=max_users, replace=False).tolist())
    if step is not None:
        step.set_total(len(users))

    async def run() -> RankerData:
        runtime = await Runtime.open_version(snapshot, content_int8_above=content_int8_above)
        return await _collect(runtime, later, users, rating_max, negatives, rng, step, fusion_users)

    return asyncio.run(run())


def _known_users(snapshot: CatalogVersion) -> list[str]:
    return snapshot.table("users").to_arrow().column("user_id").to_pylist()


def ndcg_at(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k over groups, gains = labels."""
    values = []
    for g in np.unique(groups):
        rows = groups == g
        y, s = labels[rows], scores[rows]
        ideal = np.sort(y)[::-1][:k]
        discounts = 1.0 / np.log2(np.arange(2, len(ideal) + 2))
        idcg = float((ideal * discounts).sum())
        if idcg <= 0:
            continue
        top = y[np.argsort(-s, kind="stable")][:k]
        values.append(float((top * discounts[: len(top)]).sum()) / idcg)
    return float(np.mean(values)) if values else 0.0


def train_ranker(
    data: RankerData,
    out_dir: Path,
    *,
    iterations: int,
    depth: int,
    learning_rate: float,
    seed: int,
    threads: int,
    folds: int = 4,
) -> dict[str, Any]:
    """Fit one YetiRank model per fold of users (early stopping on the fold left out), average
    them into MODEL_FILE in out_dir, and ship it only if it beats stage 1's order out of fold.

    One early-stopped model is at the mercy of which users its validation set holds (its NDCG
    moved by 0.01 between identical builds); the average of models that each left out a
    different fold is steadier, and the out-of-fold scores judge it on users no model saw."""
    from catboost import sum_models

    groups = np.unique(data.groups)
    folds = max(2, min(folds, len(groups)))
    rng = np.random.default_rng(seed)
    fold_of_group = rng.permutation(len(groups)) % folds
    fold = fold_of_group[np.searchsorted(groups, data.groups)]
    names = list(FEATURE_NAMES)
    out_of_fold = np.zeros(len(data.labels), dtype=np.float64)
    models, trees = [], []
    for f in range(folds):
        valid = fold == f
        model = _fit_one(
            data, ~valid, valid, names, iterations, depth, learning_rate, seed + f, threads
        )
        out_of_fold[valid] = model.predict(data.features[valid], thread_count=threads or -1)
        models.append(model)
        trees.append(int(model.tree_count_ or 0))
    ranker_ndcg = ndcg_at(data.labels, out_of_fold, data.groups)
    stage1_ndcg = ndcg_at(data.labels, -data.stage1_rank, data.groups)
    shipped = ranker_ndcg > stage1_ndcg
    path = out_dir / MODEL_FILE
    if shipped:
        sum_models(models, weights=[1.0 / folds] * folds).save_model(str(path))
    importance = np.mean(
        [m.get_feature_importance(type="PredictionValuesChange") for m in models], axis=0
    )
    top = np.argsort(-importance)[:8]
    return {
        "file": MODEL_FILE if shipped else None,
        "shipped": shipped,
        "rows": len(data.labels),
        "users": len(groups),
        "folds": folds,
        "iterations": sum(trees),
        "trees_per_fold": trees,
        "valid_ndcg@10": round(ranker_ndcg, 4),
        "valid_ndcg@10_stage1_order": round(stage1_ndcg, 4),
        "top_features": {names[i]: round(float(importance[i]), 2) for i in top},
    }


def _fit_one(
    data: RankerData,
    train: np.ndarray,
    valid: np.ndarray,
    names: list[str],
    iterations: int,
    depth: int,
    learning_rate: float,
    seed: int,
    threads: int,
) -> Any:
    from catboost import CatBoostRanker, Pool

    def pool(rows: np.ndarray) -> Pool:
        return Pool(
            data.features[rows], data.labels[rows], group_id=data.groups[rows], feature_names=names
        )

    model = CatBoostRanker(
        loss_function="YetiRank",
        eval_metric="NDCG:top=10",
        iterations=iterations,
        depth=depth,
        learning_rate=learning_rate,
        random_seed=seed,
        thread_count=threads or -1,
        od_type="Iter",
        od_wait=40,
        use_best_model=True,
        verbose=False,
        allow_writing_files=False,
    )
    model.fit(pool(train), eval_set=pool(valid))
    return model
