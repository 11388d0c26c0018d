"""Event intake: every bad event rejected on its own with a code, the rest weighed and kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from app.access import authorize
from app.errors import Forbidden, Unauthenticated
from app.realtime.intake import EventIntake, IntakeRules, RateLimiter
from app.realtime.records import EventDraft
from app.settings import Settings

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


class _Catalog:
    def __init__(self, ids: list[str]) -> None:
        self.index = pd.Index(ids)

    def indices_of(self, ids: list[str]) -> np.ndarray:
        return np.asarray(self.index.get_indexer(pd.Index(ids)), dtype=np.int64)


def _check(*drafts: EventDraft, rules: IntakeRules | None = None):
    intake = EventIntake(rules or IntakeRules())
    return intake.check(list(drafts), _Catalog(["i1", "i2"]), 5.0, NOW)  # type: ignore[arg-type]


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
def test_each_bad_event_is_rejected_with_its_code(draft: EventDraft, code: str) -> None:
    accepted, rejected = _check(EventDraft("ok", "i1", "view"), draft)
    assert len(accepted) == 1 and accepted[0].user_id == "ok"
    assert [(r.index, r.code) for r in rejected] == [(1, code)]
    assert rejected[0].reason


def test_accepted_events_are_weighed_and_stamped() -> None:
    accepted, rejected = _check(
        EventDraft("u", "i1", "rating", value=5.0, at=datetime(2026, 5, 1)),
        EventDraft("u", "i2", "dismiss", device="tv", session_id="s1"),
        EventDraft("u", "i2", "purchase", at=NOW + timedelta(seconds=60)),  # within the skew
    )
    assert not rejected
    assert [e.weight for e in accepted] == [3.0, 0.0, 3.0]
    assert accepted[0].at_ms == int(datetime(2026, 5, 1, tzinfo=UTC).timestamp() * 1000)
    assert accepted[1].at_ms == accepted[1].received_ms == int(NOW.timestamp() * 1000)
    assert accepted[1].device == "tv" and accepted[1].session_id == "s1"


def test_rate_limit_rejects_beyond_the_burst_then_refills() -> None:
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.take("u", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.take("other", 0.0)
    assert not limiter.take("u", 0.4)
    assert limiter.take("u", 0.5)

    rules = IntakeRules(rate_per_user=1.0, burst_per_user=2)
    accepted, rejected = _check(*(EventDraft("u", "i1", "view") for _ in range(4)), rules=rules)
    assert len(accepted) == 2 and {r.code for r in rejected} == {"RATE_LIMITED"}


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
