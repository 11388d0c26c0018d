from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.errors import InputError
from app.events import EVENT_TYPES
from pipelines.generate import (
    DEVICES,
    GENRES,
    VECTOR_DIM,
    GeneratedCatalog,
    generate_catalog,
)
from pipelines.steps import Reporter

ITEMS, USERS = 2_000, 300
ROMAN = {"II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6, "VII": 7, "VIII": 8}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> GeneratedCatalog:
    out = tmp_path_factory.mktemp("generated")
    return generate_catalog(out, items=ITEMS, users=USERS, seed=7, with_vectors=True)


@pytest.fixture(scope="module")
def items(catalog: GeneratedCatalog) -> pd.DataFrame:
    return pq.read_table(catalog.items_path).to_pandas()


@pytest.fixture(scope="module")
def events(catalog: GeneratedCatalog) -> pd.DataFrame:
    return pq.read_table(catalog.events_path).to_pandas()


def series_position(title: str, series: str) -> int:
    """1 for "Starfall Chronicles", 2 for "... 2", 3 for "...: Part III" or "... III"."""
    rest = title.removeprefix(series).removeprefix(": Part").strip()
    return 1 if not rest else int(rest) if rest.isdigit() else ROMAN[rest]


def test_same_seed_gives_identical_tables(tmp_path: Path) -> None:
    a = generate_catalog(tmp_path / "a", items=500, users=60, seed=3, with_vectors=True)
    b = generate_catalog(tmp_path / "b", items=500, users=60, seed=3, with_vectors=True)
    assert pq.read_table(a.items_path).equals(pq.read_table(b.items_path))
    assert pq.read_table(a.events_path).equals(pq.read_table(b.events_path))
    assert (a.n_events, a.reference_date) == (b.n_events, b.reference_date)


def test_different_seeds_give_different_tables(tmp_path: Path) -> None:
    a = generate_catalog(tmp_path / "a", items=500, users=60, seed=3)
    b = generate_catalog(tmp_path / "b", items=500, users=60, seed=4)
    assert not pq.read_table(a.items_path).equals(pq.read_table(b.items_path))
    assert not pq.read_table(a.events_path).equals(pq.read_table(b.events_path))


def test_schemas(catalog: GeneratedCatalog, tmp_path: Path) -> None:
    items = pq.read_schema(catalog.items_path)
    assert items.names == [
        "item_id",
        "title",
        "description",
        "genres",
        "series",
        "released",
        "content_vector",
    ]
    assert all(items.field(name).type == pa.string() for name in items.names[:-1])
    assert items.field("content_vector").type == pa.list_(pa.float32(), VECTOR_DIM)
    events = pq.read_schema(catalog.events_path)
    assert events.names == ["user_id", "item_id", "timestamp", "event", "value", "device"]
    assert [events.field(n).type for n in events.names] == [
        pa.string(),
        pa.string(),
        pa.int64(),
        pa.string(),
        pa.float64(),
        pa.string(),
    ]
    plain = generate_catalog(tmp_path, items=50, users=5)
    assert "content_vector" not in pq.read_schema(plain.items_path).names
    assert plain.paths == (tmp_path / "items.parquet", tmp_path / "events.parquet")


def test_counts_and_ids(
    catalog: GeneratedCatalog, items: pd.DataFrame, events: pd.DataFrame
) -> None:
    assert (catalog.n_items, catalog.n_users, catalog.n_events) == (ITEMS, USERS, len(events))
    assert items.item_id.is_unique and len(items) == ITEMS
    assert events.user_id.nunique() == USERS
    assert events.groupby("user_id").size().min() >= 5
    assert set(events.item_id) <= set(items.item_id)


def test_items_look_like_a_catalog(items: pd.DataFrame) -> None:
    genres = items.genres.str.split("|")
    assert genres.map(len).between(1, 3).all()
    assert set(genres.explode()) <= set(GENRES) and len(GENRES) == 20
    assert genres.map(lambda g: len(set(g)) == len(g)).all()
    assert items.title.nunique() > 0.97 * len(items)
    assert items.description.str.len().gt(40).all()
    # descriptions speak the language of the item's genres
    horror = items[items.genres.str.startswith("Horror")].description
    comedy = items[items.genres == "Comedy"].description
    assert horror.str.contains("horror film").all() and comedy.str.contains("comedy").all()
    scary = r"haunted|demon|killer|asylum|cursed|terrifying|eerie|dread|ghost|blood|jump scares"
    assert horror.str.contains(scary).mean() > 0.7 > 0.1 > comedy.str.contains(scary).mean()


def test_release_dates(catalog: GeneratedCatalog, items: pd.DataFrame) -> None:
    released = pd.to_datetime(items.released, format="%Y-%m-%d")
    reference = pd.Timestamp(catalog.reference_date)
    assert released.max() < reference
    assert released.min() > reference - pd.Timedelta(days=15 * 366)
    assert (reference - released).dt.days.le(60).mean() > 0.02
    assert catalog.reference_date == date.fromisoformat(catalog.reference_date).isoformat()


def test_series_share_genres_and_release_in_order(items: pd.DataFrame) -> None:
    entries = items[items.series.notna()].copy()
    assert 0.05 < len(entries) / len(items) < 0.15
    entries["position"] = [
        series_position(t, s) for t, s in zip(entries.title, entries.series, strict=True)
    ]
    for name, group in entries.groupby("series"):
        group = group.sort_values("position")
        assert list(group.position) == list(range(1, len(group) + 1)), name
        assert 2 <= len(group) <= 8
        assert group.genres.nunique() == 1
        assert group.released.is_monotonic_increasing, name


def test_users_watch_series_from_the_start(items: pd.DataFrame, events: pd.DataFrame) -> None:
    entries = items[items.series.notna()]
    position = {
        i: series_position(t, s)
        for i, t, s in zip(entries.item_id, entries.title, entries.series, strict=True)
    }
    seen = events[events.item_id.isin(position.keys())].sort_values("timestamp")
    seen = seen.assign(
        series=seen.item_id.map(dict(zip(entries.item_id, entries.series, strict=True))),
        position=seen.item_id.map(position),
    )
    first = seen.groupby(["user_id", "series"]).position.first()
    assert (first == 1).mean() > 0.7


def test_no_event_before_release(items: pd.DataFrame, events: pd.DataFrame) -> None:
    released = pd.to_datetime(items.set_index("item_id").released).astype("int64") // 10**9
    assert (events.timestamp >= events.item_id.map(released)).all()


def test_events_span_two_years_before_reference(
    catalog: GeneratedCatalog, events: pd.DataFrame
) -> None:
    reference = pd.Timestamp(catalog.reference_date).timestamp()
    assert events.timestamp.max() < reference
    assert events.timestamp.min() >= reference - 731 * 86400


def test_popularity_is_heavy_tailed(events: pd.DataFrame) -> None:
    counts = events.item_id.value_counts()
    top = counts.iloc[: ITEMS // 100].sum() / len(events)
    assert top > 0.08  # the top 1% of items take 8x their uniform share, or more
    assert counts.iloc[: ITEMS // 10].sum() / len(events) > 0.3


def test_daily_rhythm_peaks_in_the_evening(events: pd.DataFrame) -> None:
    hours = pd.to_datetime(events.timestamp, unit="s").dt.hour
    share = hours.value_counts(normalize=True).reindex(range(24), fill_value=0.0)
    assert share[19:23].mean() > 3 * share[2:7].mean()
    assert share.idxmax() in range(18, 23)


def test_event_mix_and_ratings(events: pd.DataFrame) -> None:
    share = events.event.value_counts(normalize=True)
    assert set(share.index) == set(EVENT_TYPES)
    assert share["view"] + share["click"] > 0.6
    assert 0.01 < share["dismiss"] < 0.06
    ratings = events[events.event == "rating"].value
    assert ratings.between(0.5, 5.0).all() and (ratings * 2 % 1 == 0).all()
    assert (ratings <= 2).mean() > 0.02 and ratings.mean() > 3
    assert events[events.event != "rating"].value.isna().all()


def test_each_user_has_a_preferred_device(events: pd.DataFrame) -> None:
    assert set(events.device) <= set(DEVICES)
    top_share = events.groupby("user_id").device.agg(
        lambda d: d.value_counts(normalize=True).iloc[0]
    )
    assert top_share.mean() > 0.6


def test_content_vectors(catalog: GeneratedCatalog, items: pd.DataFrame) -> None:
    column = pq.read_table(catalog.items_path).column("content_vector").combine_chunks()
    vectors = column.flatten().to_numpy().reshape(len(column), -1)
    assert vectors.shape == (ITEMS, VECTOR_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    first = items.genres.str.split("|").str[0].to_numpy()
    same, other = [], []
    for genre in ("Horror", "Comedy", "Western", "Science Fiction"):
        inside = vectors[first == genre]
        centre = inside.mean(0)
        same.append(float((inside @ centre).mean()))
        other.append(float((vectors[first != genre] @ centre).mean()))
    assert min(same) > max(other) + 0.05


def test_tiny_catalog(tmp_path: Path) -> None:
    made = generate_catalog(tmp_path, items=1, users=1, seed=0)
    events = pq.read_table(made.events_path).to_pandas()
    assert pq.read_table(made.items_path).num_rows == 1
    assert len(events) >= 5 and (events.item_id == "i0").all()


def test_reports_steps(tmp_path: Path) -> None:
    reporter = Reporter(quiet=True)
    made = generate_catalog(tmp_path, items=300, users=20, reporter=reporter)
    steps = {t.name: t.rows for t in reporter.timings}
    assert steps == {"generate items": 300, "generate events": made.n_events}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"items": 0, "users": 10}, "items"),
        ({"items": -3, "users": 10}, "items"),
        ({"items": 10, "users": 0}, "users"),
        ({"items": 2.5, "users": 10}, "items"),
        ({"items": True, "users": 10}, "items"),
        ({"items": 10, "users": 10, "seed": -1}, "seed"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        generate_catalog(tmp_path, **kwargs)


def test_output_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "catalog"
    target.write_text("not a directory")
    with pytest.raises(InputError, match="not a directory"):
        generate_catalog(target, items=10, users=10)
