"""User profiles from the batch build, held in memory for the request path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from app.domain import UserState
from app.errors import CatalogError
from app.items import ItemCatalog, _matrix

COLUMNS = [
    "user_id",
    "n_events",
    "active_days",
    "top_genres",
    "genre_shares",
    "recent_items",
    "dismissed_items",
    "consumed",
    "history_items",
    "history_weights",
    "cf_vector",
    "content_vector",
]


@dataclass
class UserProfiles:
    index: pd.Index
    n_events: np.ndarray
    active_days: np.ndarray
    genres: list[dict[str, float]]
    recent: list[np.ndarray]  # item_index, newest first
    dismissed: list[np.ndarray]
    consumed: list[np.ndarray]
    history: list[np.ndarray]  # endorsed item_index, newest first
    history_weights: list[np.ndarray]
    cf: np.ndarray
    content: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    @classmethod
    def from_table(cls, table: Any, items: ItemCatalog) -> UserProfiles:
        arrow = table.to_arrow().select(COLUMNS)
        top = arrow["top_genres"].to_pylist()
        shares = arrow["genre_shares"].to_pylist()
        return cls(
            index=pd.Index(arrow["user_id"].to_pylist()),
            n_events=arrow["n_events"].to_numpy(zero_copy_only=False),
            active_days=arrow["active_days"].to_numpy(zero_copy_only=False),
            genres=[dict(zip(g, s, strict=True)) for g, s in zip(top, shares, strict=True)],
            recent=items.indices_of_lists(arrow["recent_items"]),
            dismissed=items.indices_of_lists(arrow["dismissed_items"]),
            consumed=[np.asarray(c, dtype=np.int64) for c in arrow["consumed"].to_pylist()],
            history=_lists(arrow["history_items"], np.int64),
            history_weights=_lists(arrow["history_weights"], np.float32),
            cf=_matrix(arrow["cf_vector"]),
            content=_matrix(arrow["content_vector"]),
        )

    def known(self, user_ids: list[str]) -> set[str]:
        """Which of these users the build saw."""
        rows = self.index.get_indexer(pd.Index(user_ids)).tolist()
        return {user for user, row in zip(user_ids, rows, strict=True) if row >= 0}

    def state(self, user_id: str) -> UserState:
        """The user's batch state; an unknown user gets an empty, cold-start state."""
        try:
            # one hash lookup; a one-id pd.Index for get_indexer cost ~60 us a request
            row = self.index.get_loc(user_id)
        except KeyError:
            return UserState(user_id, False, None, None, [], set(), set())
        if not isinstance(row, int | np.integer):  # a slice or mask: the id is not unique
            raise CatalogError(f"user id {user_id!r} appears more than once in the profiles")
        cf = self.cf[row]
        content = self.content[row]
        return UserState(
            user_id=user_id,
            known=True,
            cf_vector=cf if np.any(cf) else None,
            content_vector=content if np.any(content) else None,
            recent_items=[int(i) for i in self.recent[row] if i >= 0],
            consumed={int(i) for i in self.consumed[row]},
            dismissed={int(i) for i in self.dismissed[row] if i >= 0},
            n_events=int(self.n_events[row]),
            active_days=int(self.active_days[row]),
            genre_shares=self.genres[row],
            history=self.history[row],
            history_weights=self.history_weights[row],
        )


def _lists(column: Any, dtype: type) -> list[np.ndarray]:
    """A list<number> column as one numpy array per row (views into one flat array)."""
    array = column.combine_chunks()
    flat = array.values.to_numpy(zero_copy_only=False).astype(dtype)
    offsets = array.offsets.to_numpy()
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(array))]
