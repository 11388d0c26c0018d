"""Event intake: every bad event rejected on its own with a code, the rest weighed and kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from app.access import authorize
from app.errors import Forbidden, Unauthenticated
from app.rate_limits import MemoryBuckets, RedisBuckets
from app.realtime.intake import EventIntake, IntakeRules
from app.realtime.records import EventDraft
from app.settings import Settings

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


class _Catalog:
    def __init__(self, ids: list[str]) -> None:
        self.index = pd.Index(ids)

    def indices_of(self, ids: list[str]) -> np.ndarray:
        return np.asarray(self.index.get_indexer(pd.Index(ids)), dtype=np.int64)


async def _check(*drafts: EventDraft, rules: IntakeRules | None = None, intake=None):
    intake = intake or EventIntake(rules or IntakeRules())
    return await intake.check(list(drafts), _Catalog(["i1", "i2"]), 5.0, NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("draft", "code"),
    [
        (EventDraft("u", "nope", "view"), "UNKNOWN_ITEM"),
        (EventDraft("", "i1", "view"), "BAD_ID"),
        (EventDraft("u" * 300, "i1", "view"), "BAD_ID"),
        (EventDraft("u\u202e", "i1", "view"), "BAD_ID"),
        (EventDraft("u", "i1", "view", device="tv\x00"), "BAD_LABEL"),
        (EventDraft("u", "i1", "view", session_id="s" * 65), "BAD_LABEL"),
        (EventDraft("u", "i1", "watch"), "BAD_EVENT"),
        (EventDraft("u", "i1", "view", value=float("nan")), "BAD_VALUE"),
        (EventDraft("u", "i1", "click", value=float("inf")), "BAD_VALUE"),
        (EventDraft("u", "i1", "rating"), "BAD_VALUE"),
        (EventDraft("u", "i1", "rating", value=6.0), "BAD_VALUE"),
        (EventDraft("u", "i1", "rating", value=-1.0), "BAD_VALUE"),
        (EventDraft("u", "i1", "view", at=NOW + timedelta(days=1)), "BAD_TIME"),
        (EventDraft("u", "i1", "view", at=datetime(1969, 12, 31, tzinfo=UTC)), "BAD_TIME"),
        (EventDraft("u", "i1", "view", at=datetime(9999, 12, 31)), "BAD_TIME"),
    ],
)
async def test_each_bad_event_is_rejected_with_its_code(draft: EventDraft, code: str) -> None:
    accepted, rejected = await _check(EventDraft("ok", "i1", "view"), draft)
    assert len(accepted) == 1 and accepted[0].user_id == "ok"
    assert [(r.index, r.code) for r in rejected] == [(1, code)]
    assert rejected[0].reason


async def test_accepted_events_are_weighed_and_stamped() -> None:
    accepted, rejected = await _check(
        EventDraft("u", "i1", "rating", value=5.0, at=datetime(2026, 5, 1)),
        EventDraft("u", "i2", "dismiss", device="tv", session_id="s1"),
        EventDraft("u", "i2", "purchase", at=NOW + timedelta(seconds=60)),  # within the skew
    )
    assert not rejected
    assert [e.weight for e in accepted] == [3.0, 0.0, 3.0]
    assert accepted[0].at_ms == int(datetime(2026, 5, 1, tzinfo=UTC).timestamp() * 1000)
    assert accepted[1].at_ms == accepted[1].received_ms == int(NOW.timestamp() * 1000)
    assert accepted[1].device == "tv" and accepted[1].session_id == "s1"


async def test_a_users_bucket_grants_whole_tokens_up_to_the_burst_then_refills() -> None:
    buckets = MemoryBuckets()
    assert await buckets.grant({"u": 4, "other": 1}, 2.0, 3.0, 0.0) == {"u": 3, "other": 1}
    assert await buckets.grant({"u": 1}, 2.0, 3.0, 0.4) == {"u": 0}  # 0.8 of a token
    assert await buckets.grant({"u": 5}, 2.0, 3.0, 0.5) == {"u": 1}
    assert await buckets.grant({"u": 9}, 2.0, 3.0, 100.0) == {"u": 3}  # never past the burst


async def test_rate_limit_keeps_a_users_first_events_and_rejects_the_rest() -> None:
    rules = IntakeRules(rate_per_user=1.0, burst_per_user=2)
    drafts = [EventDraft("u", "i1", "view") for _ in range(4)]
    drafts.insert(1, EventDraft("u", "nowhere", "view"))  # rejected before it costs a token
    drafts.append(EventDraft("v", "i2", "view"))  # another user: a bucket of their own
    accepted, rejected = await _check(*drafts, rules=rules)
    assert [e.user_id for e in accepted] == ["u", "u", "v"]
    assert [(r.index, r.code) for r in rejected] == [
        (1, "UNKNOWN_ITEM"),
        (3, "RATE_LIMITED"),
        (4, "RATE_LIMITED"),
    ]


async def test_replicas_on_one_redis_share_a_users_event_budget(
    redis_server: str, redis_namespace: str
) -> None:
    """A bot sending to every replica gets one user's burst in all, not one per replica."""
    rules = IntakeRules(rate_per_user=0.01, burst_per_user=5)
    replicas = [
        EventIntake(rules, RedisBuckets.connect(redis_server, redis_namespace)) for _ in range(2)
    ]
    try:
        kept = [
            len((await _check(*[EventDraft("bot", "i1", "view")] * 3, intake=replica))[0])
            for replica in replicas
        ]
        assert kept == [3, 2]
        other = await _check(EventDraft("person", "i2", "view"), intake=replicas[1])
        assert len(other[0]) == 1
    finally:
        for replica in replicas:
            await replica.buckets.close()


def test_keys_are_required_and_checked() -> None:
    open_server = Settings(api_key=None, admin_key=None)
    with pytest.raises(Forbidden, match="SHORTLIST_API_KEY"):
        authorize(open_server, "anything", admin=False)
    with pytest.raises(Forbidden, match="SHORTLIST_ADMIN_KEY"):
        authorize(Settings(api_key="k"), "k", admin=True)

    keyed = Settings(api_key="k", admin_key="a")
    authorize(keyed, "k", admin=False)
    authorize(keyed, "a", admin=False)
    authorize(keyed, "a", admin=True)
    with pytest.raises(Forbidden, match="admin key"):
        authorize(keyed, "k", admin=True)
    for wrong in (None, "", "kk", "a "):
        with pytest.raises(Unauthenticated):
            authorize(keyed, wrong, admin=False)
    assert Settings(api_key="  ").api_key is None  # a blank key is no key
