"""Warm-up: a freshly loaded version answers a few requests before it serves any.

The first requests on a version pay for what happens once: CatBoost's first prediction, the
pages of model and index files the load did not touch, numpy's first calls on new arrays. At 1M
items `serve --workers 2` answered its first 10 seconds with a p99 of 184 ms, 33 ms once warm.
So a version, on start-up and before a reload or a followed pin switches to it, first answers
SHORTLIST_WARMUP_REQUESTS recommendations for users sampled from its own profiles (seeded): on
the batch profiles only, seen by no one and counted in no metric.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import numpy as np

from app.domain import RecommendationRequest
from app.pipeline import Pipeline
from app.users import UserProfiles

log = logging.getLogger("shortlist.engine")
COUNT = 30  # what a client usually asks for


async def warm(pipeline: Pipeline, users: UserProfiles, requests: int, seed: int = 0) -> int:
    """Answer `requests` recommendations on `pipeline`; returns how many ran. A warm-up that
    fails is logged and cut short: it never stops a version from serving."""
    if requests <= 0 or not len(users):
        return 0
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(users), size=min(requests, len(users)), replace=False)
    started, now, done = time.perf_counter(), datetime.now(tz=UTC), 0
    try:
        for row in rows.tolist():
            await pipeline.recommend(RecommendationRequest(str(users.index[row]), COUNT, now))
            done += 1
    except Exception as exc:
        log.warning(
            "warm-up of %s stopped after %d requests: %s", pipeline.runtime.version, done, exc
        )
    log.info(
        "warmed %s with %d requests in %.0f ms",
        pipeline.runtime.version,
        done,
        (time.perf_counter() - started) * 1000,
    )
    return done
