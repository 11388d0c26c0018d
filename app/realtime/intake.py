"""Event intake: each event of a call checked on its own, weighed, and rate-limited per user.

A bad event is rejected with a code and a reason and the rest of the call goes on; nothing about
a call's events ever becomes a server error. Checks: ids (length, no control or formatting
characters), the item (in the catalog, upserted ones included), the value (finite; a rating needs
one within the catalog's scale), the moment (not before 1970, not beyond the allowed clock skew
into the future), the labels (device, session id) and the user's rate (a token bucket).
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from app.events import EVENT_TYPES, event_weights
from app.items import ItemCatalog
from app.rate_limits import BucketStore, MemoryBuckets
from app.realtime.records import EventDraft, LiveEvent, Rejection

MAX_ID_LENGTH = 256
USER_BUCKET = "user-events:"  # a user's bucket, beside the per-client ones (`app.rate_limits`)
MAX_LABEL_LENGTH = 64


@dataclass(frozen=True)
class IntakeRules:
    max_future_s: float = 300.0
    rate_per_user: float = 10.0
    burst_per_user: int = 300


class EventIntake:
    def __init__(self, rules: IntakeRules, buckets: BucketStore | None = None) -> None:
        self.rules = rules
        # a token bucket per user: in Redis with replicas, so that N of them do not grant N times
        self.buckets = buckets or MemoryBuckets()

    async def check(
        self,
        drafts: Sequence[EventDraft],
        catalog: ItemCatalog,
        rating_max: float,
        now: datetime | None = None,
    ) -> tuple[list[LiveEvent], list[Rejection]]:
        """The acceptable events of a call, in order, and a rejection for each of the others.

        Each user's events take a token each from the user's bucket, in call order: those past
        the tokens there are rejected (RATE_LIMITED), the ones before them kept."""
        now = now or datetime.now(tz=UTC)
        now_ms = int(now.timestamp() * 1000)
        known = catalog.indices_of([d.item_id for d in drafts]) >= 0
        valid: list[tuple[EventDraft, int]] = []
        rejected: list[Rejection] = []
        for index, draft in enumerate(drafts):
            problem = self._problem(draft, bool(known[index]), rating_max, now_ms)
            if problem is not None:
                rejected.append(Rejection(index, *problem))
            else:
                valid.append((draft, index))
        wanted = Counter(USER_BUCKET + d.user_id for d, _ in valid)
        left = await self.buckets.grant(
            dict(wanted), self.rules.rate_per_user, float(self.rules.burst_per_user), now_ms / 1000
        )
        checked: list[tuple[EventDraft, int]] = []
        for draft, index in valid:
            key = USER_BUCKET + draft.user_id
            if left[key] > 0:
                left[key] -= 1
                checked.append((draft, index))
                continue
            rejected.append(
                Rejection(
                    index,
                    "RATE_LIMITED",
                    f"user {draft.user_id} sends events faster than "
                    f"{self.rules.rate_per_user:g}/s (bursts up to {self.rules.burst_per_user})",
                )
            )
        rejected.sort(key=lambda r: r.index)
        weights = event_weights(
            np.array([d.event for d, _ in checked], dtype=object),
            np.array([np.nan if d.value is None else d.value for d, _ in checked], dtype=float),
            rating_max,
        )
        accepted = [
            LiveEvent(
                user_id=d.user_id,
                item_id=d.item_id,
                event=d.event,
                value=d.value,
                weight=float(w),
                at_ms=_ms(d.at) if d.at is not None else now_ms,
                received_ms=now_ms,
                device=d.device or None,
                session_id=d.session_id or None,
            )
            for (d, _), w in zip(checked, weights.tolist(), strict=True)
        ]
        return accepted, rejected

    def _problem(
        self, draft: EventDraft, known: bool, rating_max: float, now_ms: int
    ) -> tuple[str, str] | None:
        for value, what in ((draft.user_id, "userId"), (draft.item_id, "itemId")):
            bad = _bad_text(value, MAX_ID_LENGTH)
            if bad:
                return "BAD_ID", f"{what} {bad}"
        for label, what in ((draft.device, "device"), (draft.session_id, "sessionId")):
            bad = _bad_text(label, MAX_LABEL_LENGTH) if label else None
            if bad:
                return "BAD_LABEL", f"{what} {bad}"
        if draft.event not in EVENT_TYPES:
            return "BAD_EVENT", f"unknown event type {draft.event!r}"
        if not known:
            return "UNKNOWN_ITEM", f"item {draft.item_id} is not in the catalog"
        if draft.value is not None and not math.isfinite(draft.value):
            return "BAD_VALUE", "value must be a finite number"
        if draft.event == "rating":
            if draft.value is None:
                return "BAD_VALUE", "a rating needs a value"
            if not 0.0 <= draft.value <= rating_max:
                return "BAD_VALUE", f"a rating must be between 0 and {rating_max:g}"
        if draft.at is not None:
            at_ms = _ms(draft.at)
            if at_ms < 0:
                return "BAD_TIME", "at must not be before 1970"
            if at_ms > now_ms + self.rules.max_future_s * 1000:
                return "BAD_TIME", (
                    f"at lies more than {self.rules.max_future_s:g} s in the future"
                )
        return None


def _bad_text(value: str | None, limit: int) -> str | None:
    text = "" if value is None else str(value)
    if not text or len(text) > limit:
        return f"must be 1 to {limit} characters"
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in text):
        return "contains control or formatting characters"
    return None


def _ms(at: datetime) -> int:
    moment = at if at.tzinfo else at.replace(tzinfo=UTC)
    try:
        return int(moment.timestamp() * 1000)
    except (OverflowError, OSError, ValueError):
        return -1
