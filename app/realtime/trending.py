"""Trending now: per item, how many distinct users endorsed it lately, each counted once.

An item's score at time t is the sum over distinct users u of 2 ** -((t - last(u, i)) / h): a
user's latest endorsement counts 1 and halves every half-life h; repeating it only refreshes it.
However many events a user sends, they move an item's score by at most 1, so a burst from a few
accounts weighs less than a handful of real users (and the intake's per-user rate limit caps what
they can send at all).

Scores are kept as masses scaled to a reference moment (2 ** ((last - reference) / h)), so every
item decays by the same factor and the order only changes when events arrive: ranking needs no
clock, and events applied out of time order still count exactly. Contributions older than
`forget_after` half-lives are dropped to bound memory.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from app.items import ItemCatalog

REBASE_AFTER = 256.0  # half-lives between reference moments (2 ** 256 stays far from overflow)


class Trending:
    def __init__(self, half_life_s: float, forget_after: float = 12.0) -> None:
        self.half_life_s = half_life_s
        self.forget_after = forget_after
        self.reference_s: float | None = None
        self._mass: dict[str, float] = {}  # item -> sum of scaled contributions
        self._last: dict[str, dict[str, float]] = {}  # item -> user -> latest moment (s)
        self._top: list[tuple[str, float]] | None = None
        self._applied = 0

    def add(self, user_id: str, item_id: str, at_s: float) -> None:
        """Count an endorsement of `item_id` by `user_id` at unix time `at_s`."""
        if self.reference_s is None:
            self.reference_s = at_s
        if (at_s - self.reference_s) / self.half_life_s > REBASE_AFTER:
            self._rebase(at_s)
        users = self._last.setdefault(item_id, {})
        before = users.get(user_id)
        if before is not None and before >= at_s:
            return
        gained = self._scaled(at_s) - (self._scaled(before) if before is not None else 0.0)
        users[user_id] = at_s
        self._mass[item_id] = self._mass.get(item_id, 0.0) + gained
        self._top = None
        self._applied += 1
        if self._applied % 50_000 == 0:
            self.forget(at_s)

    def score(self, item_id: str, now_s: float) -> float:
        """Decayed count of distinct recent users, at `now_s`."""
        mass = self._mass.get(item_id, 0.0)
        if not mass or self.reference_s is None:
            return 0.0
        return mass * 2.0 ** (-(now_s - self.reference_s) / self.half_life_s)

    def top(self, n: int) -> list[tuple[str, float]]:
        """The n items with the highest score, best first, with their (scaled) masses."""
        if self._top is None or len(self._top) < min(n, len(self._mass)):
            self._top = heapq.nlargest(max(n, 500), self._mass.items(), key=lambda kv: kv[1])
        return self._top[:n]

    def ranked(self, catalog: ItemCatalog, n: int) -> np.ndarray:
        """item_index of the top trending items that are in `catalog`, best first."""
        ids = [item for item, mass in self.top(n) if mass > 0]
        if not ids:
            return np.zeros(0, dtype=np.int64)
        found = catalog.indices_of(ids)
        return found[found >= 0]

    def forget(self, now_s: float) -> None:
        """Drop contributions that decayed below 2 ** -forget_after."""
        horizon = now_s - self.forget_after * self.half_life_s
        for item in list(self._last):
            users = self._last[item]
            stale = [u for u, at in users.items() if at < horizon]
            if not stale:
                continue
            for user in stale:
                self._mass[item] -= self._scaled(users.pop(user))
            if not users:
                del self._last[item]
                del self._mass[item]
        self._top = None

    def clear(self) -> None:
        self.reference_s = None
        self._mass.clear()
        self._last.clear()
        self._top = None

    def __len__(self) -> int:
        return len(self._mass)

    def _scaled(self, at_s: float) -> float:
        assert self.reference_s is not None
        return 2.0 ** ((at_s - self.reference_s) / self.half_life_s)

    def _rebase(self, at_s: float) -> None:
        assert self.reference_s is not None
        shift = at_s - self.reference_s
        factor = 2.0 ** (-shift / self.half_life_s)
        self._mass = {item: mass * factor for item, mass in self._mass.items()}
        self.reference_s = at_s
        self._top = None
        if not all(math.isfinite(m) for m in self._mass.values()):
            self._mass = {item: 0.0 for item in self._mass}
