"""A deterministic synthetic catalog in the "generic" input format.

`generate_catalog(out, items=..., users=...)` writes `items.parquet` and `events.parquet` (see
`ITEMS_SCHEMA` and `EVENTS_SCHEMA`) from a small generative model:

- 20 genres, each a unit vector in a 16-d taste space; related genres (dark, light, epic, real)
  share part of their vector and co-occur on items. An item has 1-3 genres and a latent vector,
  the weighted sum of its genre vectors plus item-specific noise.
- Popularity is Zipf-like over a random ranking that favours recent releases; about 10% of items
  form series of 2-8 entries with shared genres, near-identical latents and ordered releases.
- Each user has a mixture of 1-3 taste components. An event picks a component, draws candidates
  by popularity (part of them from that component's genre), drops those not yet released at the
  event's time and keeps one by softmax(sharpness * taste . latent) (Gumbel-max). A few events
  explore popular items regardless of taste: they bring the dismissals and low ratings.
- Users consume a series from its first entry on, in order. Events come in sessions with an
  evening peak over the two years before a reference date that derives from the seed.

The same seed gives identical tables; everything is drawn in chunks of items and of users (each
chunk from its own seeded stream), so 10M items or 100k users fit in memory.

Items are drawn in `generate_items`, events in `generate_events`, from the words in `lexicon`;
this module checks the arguments, owns the seeded streams and writes the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from app.errors import InputError
from pipelines.generate_events import DEVICES, EVENTS_SCHEMA, activity, events_table, user_chunks
from pipelines.generate_items import (
    ITEMS_SCHEMA,
    LATENT_DIM,
    VECTOR_DIM,
    VECTOR_FIELD,
    content_vectors,
    draw_items,
    genre_centroids,
    items_table,
    numbered_ids,
)
from pipelines.lexicon import GENRES
from pipelines.steps import Reporter

__all__ = [
    "DEVICES",
    "EVENTS_SCHEMA",
    "GENRES",
    "ITEMS_SCHEMA",
    "LATENT_DIM",
    "MAX_ITEMS",
    "MAX_USERS",
    "VECTOR_DIM",
    "VECTOR_FIELD",
    "GeneratedCatalog",
    "generate_catalog",
]

MAX_ITEMS = 50_000_000
MAX_USERS = 50_000_000
ROW_GROUP = 100_000
# Seeded streams, one per purpose, so that adding draws to one part never shifts another.
_REFERENCE, _CATALOG, _TEXT, _VECTORS, _ACTIVITY, _EVENTS = range(6)


@dataclass(frozen=True)
class GeneratedCatalog:
    """What `generate_catalog` wrote. `reference_date` is the day after the last event."""

    out: Path
    n_items: int
    n_users: int
    n_events: int
    items_path: Path
    events_path: Path
    reference_date: str

    @property
    def paths(self) -> tuple[Path, Path]:
        return (self.items_path, self.events_path)


def generate_catalog(
    out: Path,
    *,
    items: int,
    users: int,
    seed: int = 42,
    with_vectors: bool = False,
    reporter: Reporter | None = None,
) -> GeneratedCatalog:
    """Write `items.parquet` and `events.parquet` into `out` (created if missing).

    Same arguments, same tables. Raises InputError for a count below 1 or too large, a negative
    seed, or an `out` that is a file.
    """
    _check(out, items=items, users=users, seed=seed)
    reporter = reporter or Reporter(quiet=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ref_day = _reference_day(seed)
    centroids = genre_centroids(_rng(seed, _REFERENCE, 1))
    items_path, events_path = out / "items.parquet", out / "events.parquet"

    with reporter.step("generate items", total=items) as step:
        cat = draw_items(items, _rng(seed, _CATALOG), ref_day, centroids)
        item_ids = numbered_ids("i", 0, items, items)
        schema = ITEMS_SCHEMA.append(VECTOR_FIELD) if with_vectors else ITEMS_SCHEMA
        projection = _rng(seed, _VECTORS).standard_normal((LATENT_DIM, VECTOR_DIM))
        with pq.ParquetWriter(items_path, schema) as writer:
            for chunk, lo in enumerate(range(0, items, ROW_GROUP)):
                hi = min(lo + ROW_GROUP, items)
                table = items_table(cat, item_ids[lo:hi], lo, hi, _rng(seed, _TEXT, chunk))
                if with_vectors:
                    vector_rng = _rng(seed, _VECTORS, chunk)
                    vectors = content_vectors(cat.latent[lo:hi], projection, vector_rng)
                    table = table.append_column(VECTOR_FIELD, vectors)
                writer.write_table(table)
                step.advance(hi - lo)

    counts = activity(users, _rng(seed, _ACTIVITY))
    n_events = int(counts.sum())
    bounds = user_chunks(counts)
    with reporter.step("generate events", total=n_events) as step:
        with pq.ParquetWriter(events_path, EVENTS_SCHEMA) as writer:
            pending = EVENTS_SCHEMA.empty_table()
            for chunk, (lo, hi) in enumerate(bounds):
                rng = _rng(seed, _EVENTS, chunk)
                table = events_table(cat, item_ids, counts, lo, hi, ref_day, centroids, rng)
                pending = pa.concat_tables([pending, table])
                full = pending.num_rows - pending.num_rows % ROW_GROUP
                if full:  # whole row groups only, whatever the chunk sizes
                    writer.write_table(pending.slice(0, full), row_group_size=ROW_GROUP)
                    pending = pending.slice(full)
                step.advance(table.num_rows)
            if pending.num_rows:
                writer.write_table(pending)
        step.note = f"{users:,} users"

    reference = (date(1970, 1, 1) + timedelta(days=ref_day)).isoformat()
    return GeneratedCatalog(out, items, users, n_events, items_path, events_path, reference)


def _check(out: Path, *, items: int, users: int, seed: int) -> None:
    for name, value, most in (("items", items, MAX_ITEMS), ("users", users, MAX_USERS)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise InputError(f"{name} must be an integer, got {value!r}")
        if not 1 <= value <= most:
            raise InputError(f"{name} must be between 1 and {most:,}, got {value:,}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    if Path(out).exists() and not Path(out).is_dir():
        raise InputError(f"output {out} exists and is not a directory")


def _rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), stream, *keys]))


def _reference_day(seed: int) -> int:
    """Days since the epoch of the reference date: within 2024, fixed by the seed."""
    start = (date(2024, 1, 1) - date(1970, 1, 1)).days
    return start + int(_rng(seed, _REFERENCE).integers(0, 366))
