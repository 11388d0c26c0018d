"""The serving heap: what a loaded version allocates stays out of the cycle collector's way.

A loaded version is hundreds of thousands of long-lived Python objects (Arrow and LanceDB
handles, CatBoost, id maps). Every request allocates thousands of short-lived ones (source hits,
features), so CPython's full (generation 2) collection runs every few dozen requests and walks
all of them: on ml-latest-small that was the 1% of requests that spent 100+ ms in the candidate
stage outside any source. `gc.freeze()` moves what is alive after a load into the permanent
generation, which collections skip; unfreezing first lets the previous version's cycles go.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect once, then exempt everything alive from future collections (after a load)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
