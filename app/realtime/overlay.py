"""What each user did since the build, laid over their batch profile at request time.

`LiveUser` keeps, by item id (so it outlives catalog versions): recent items newest first,
consumed and dismissed items, summed endorsement weights, event count and active days. `overlay`
turns a batch `UserState` and a `LiveUser` into the state the pipeline reads: live items first in
`recent_items` and in the endorsed history, consumed and dismissed merged (a later endorsement
takes an item off the dismissed list), the CF vector refolded against the version's item
factors, the content profile and genre shares moved toward the live endorsements. Batch states
are cached and shared: never mutated.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from app.domain import UserState
from app.items import ItemCatalog
from app.realtime.fold_in import History
from app.realtime.records import LiveEvent

DAY_MS = 86_400_000
TOP_GENRES = 5  # as many genres as the build keeps per user


@dataclass
class LiveUser:
    recent: list[str] = field(default_factory=list)  # newest first, no dismissals
    consumed: set[str] = field(default_factory=set)
    dismissed: set[str] = field(default_factory=set)
    endorsements: dict[str, float] = field(default_factory=dict)  # item -> summed weight
    n_events: int = 0
    days: set[int] = field(default_factory=set)
    revision: int = 0  # bumped by every event: derived state is cached per revision
    history: tuple[str, asyncio.Future[History]] | None = None  # (version, its batch history)
    derived: tuple[str, int, UserState] | None = None  # (catalog key, revision, state)

    def apply(self, event: LiveEvent, keep_recent: int) -> None:
        self.n_events += 1
        self.revision += 1
        self.days.add(event.at_ms // DAY_MS)
        if event.event == "dismiss":
            self.dismissed.add(event.item_id)
            return
        self.consumed.add(event.item_id)
        if event.weight > 0:
            self.endorsements[event.item_id] = (
                self.endorsements.get(event.item_id, 0.0) + event.weight
            )
            if event.weight >= 1.0:
                self.dismissed.discard(event.item_id)
        if self.recent and self.recent[0] == event.item_id:
            return
        if event.item_id in self.recent:
            self.recent.remove(event.item_id)
        self.recent.insert(0, event.item_id)
        del self.recent[keep_recent:]


class LiveUsers:
    """Every user with live events, by user id."""

    def __init__(self, keep_recent: int) -> None:
        self.keep_recent = keep_recent
        self.users: dict[str, LiveUser] = {}
        self.events = 0

    def apply(self, event: LiveEvent) -> None:
        user = self.users.get(event.user_id)
        if user is None:
            user = self.users[event.user_id] = LiveUser()
        user.apply(event, self.keep_recent)
        self.events += 1

    def get(self, user_id: str) -> LiveUser | None:
        return self.users.get(user_id)

    def clear(self) -> None:
        self.users.clear()
        self.events = 0

    def __len__(self) -> int:
        return len(self.users)


def overlay(
    batch: UserState,
    live: LiveUser,
    items: ItemCatalog,
    keep_recent: int,
    cf_vector: np.ndarray | None,
    history: History | None,
) -> UserState:
    """The batch state with the live events laid over it (a new object)."""
    recent_live = [int(i) for i in items.indices_of(live.recent) if i >= 0]
    seen = set(recent_live)
    recent = recent_live + [i for i in batch.recent_items if i not in seen]
    consumed = batch.consumed | {int(i) for i in items.indices_of(list(live.consumed)) if i >= 0}
    endorsed = [item for item, weight in live.endorsements.items() if weight >= 1.0]
    revived = {int(i) for i in items.indices_of(endorsed) if i >= 0}
    dismissed = (batch.dismissed - revived) | {
        int(i) for i in items.indices_of(list(live.dismissed)) if i >= 0
    }
    content, genres = _taste(batch, live, items, history)
    history_items, history_weights = _endorsed_history(batch, live, items)
    return UserState(
        user_id=batch.user_id,
        known=True,
        cf_vector=cf_vector if cf_vector is not None else batch.cf_vector,
        content_vector=content,
        recent_items=recent[:keep_recent],
        consumed=consumed,
        dismissed=dismissed,
        n_events=batch.n_events + live.n_events,
        active_days=batch.active_days + len(live.days),
        genre_shares=genres,
        history=history_items,
        history_weights=history_weights,
    )


def _endorsed_history(
    batch: UserState, live: LiveUser, items: ItemCatalog
) -> tuple[np.ndarray, np.ndarray]:
    """Live endorsements (newest first) ahead of the batch history, weights summed where an item
    is in both: what the item-item sources and features score from."""
    newest = [i for i in live.recent if live.endorsements.get(i, 0.0) > 0]
    listed = set(newest)
    ids = newest + [i for i, w in live.endorsements.items() if w > 0 and i not in listed]
    index = items.indices_of(ids)
    known = index >= 0
    live_items = index[known]
    live_weights = np.array([live.endorsements[i] for i in ids], dtype=np.float32)[known]
    in_batch = {int(item): row for row, item in enumerate(batch.history.tolist())}
    for n, item in enumerate(live_items.tolist()):
        if item in in_batch:
            live_weights[n] += batch.history_weights[in_batch[item]]
    rest = ~np.isin(batch.history, live_items)
    return (
        np.concatenate([live_items, batch.history[rest]]).astype(np.int64),
        np.concatenate([live_weights, batch.history_weights[rest]]).astype(np.float32),
    )


def _taste(
    batch: UserState, live: LiveUser, items: ItemCatalog, history: History | None
) -> tuple[np.ndarray | None, dict[str, float]]:
    """Content profile and genre shares moved toward the live endorsements.

    The batch profile counts as much as the user's batch endorsement weight; each live item
    counts its own weight (live events are the user's most recent, so they are not decayed).
    """
    ids = list(live.endorsements)
    index = items.indices_of(ids)
    found = index >= 0
    if not found.any():
        return batch.content_vector, batch.genre_shares
    weights = np.array([live.endorsements[i] for i in ids], dtype=np.float32)[found]
    index = index[found]
    batch_mass = history.mass if history is not None else 0.0
    profile = weights @ items.content[index]
    if batch.content_vector is not None and batch_mass > 0:
        profile = profile + batch_mass * batch.content_vector
    norm = float(np.linalg.norm(profile))
    content = (profile / norm).astype(np.float32) if norm > 0 else batch.content_vector

    mass = {g: s * batch_mass for g, s in batch.genre_shares.items()} if batch_mass > 0 else {}
    for weight, row in zip(weights.tolist(), index.tolist(), strict=True):
        for genre in items.genres[row]:
            mass[genre] = mass.get(genre, 0.0) + weight
    total = sum(mass.values())
    if total <= 0:
        return content, batch.genre_shares
    top = sorted(mass.items(), key=lambda kv: -kv[1])[:TOP_GENRES]
    return content, {g: round(m / total, 4) for g, m in top}
