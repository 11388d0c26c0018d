"""End-to-end builds: a generated catalog, ml-latest-small, and failures that must not hurt."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.errors import InputError
from app.runtime import Runtime
from app.settings import Settings
from app.store import BUILDING, CONTENT_FILE, CURRENT, CatalogRoot
from pipelines import build as build_module
from pipelines.build import build, build_catalog
from pipelines.ingest import load_source
from pipelines.ingest.raw import EVENT_COLUMNS
from pipelines.steps import Reporter
from tests.conftest import ROOT


def _vectors(table, column: str) -> np.ndarray:
    array = table.to_arrow()[column].combine_chunks()
    return array.values.to_numpy().reshape(len(array), -1)


def test_generated_build_writes_every_table_and_the_manifest(built_catalog: Path) -> None:
    version = CatalogRoot(built_catalog).open()
    manifest = version.manifest
    assert manifest.counts["items"] == 3000
    assert manifest.counts["users"] == 600
    assert manifest.counts["events"] == version.table("events").count_rows()
    assert version.table("items").count_rows() == 3000
    assert version.table("users").count_rows() == 600
    assert manifest.text_model == "source"  # the generator gave every vector
    assert manifest.cf["algorithm"] in ("als", "bpr")
    assert {"als_hit_rate@100", "bpr_hit_rate@100"} <= set(manifest.cf["measurements"])
    assert set(manifest.indexes) == {"cf_vector", "content_vector"}
    for choice in manifest.indexes.values():
        assert choice.recall_at_k >= 0.95
    assert manifest.ranker is not None and (version.path / "ranker.cbm").exists()
    assert not (version.path / "_ranker_snapshot").exists()
    content = _vectors(version.table("items"), "content_vector")
    np.testing.assert_allclose(np.linalg.norm(content, axis=1), 1.0, atol=1e-4)
    names = [s["name"] for s in manifest.steps]
    assert names[0] == "ingest" and names[-1] == "total"
    for step in ("embed", "cf", "stats", "write", "index", "ranker", "publish"):
        assert step in names


def test_items_table_holds_statistics_later_stages_need(built_catalog: Path) -> None:
    items = CatalogRoot(built_catalog).open().table("items").to_pandas()
    assert items["item_id"].is_unique
    assert (items["popularity_pct"].between(0, 1)).all()
    top = items.nlargest(30, "popularity_decayed")
    assert top["n_events"].mean() > items["n_events"].mean()  # decayed popularity tracks use
    in_series = items.dropna(subset=["series"])
    assert len(in_series) > 0
    for _, group in in_series.groupby("series"):
        positions = group.sort_values("released")["series_position"].tolist()
        assert positions == sorted(positions)


def test_users_table_holds_profiles(built_catalog: Path) -> None:
    users = CatalogRoot(built_catalog).open().table("users").to_pandas()
    assert users["user_id"].is_unique
    assert (users["n_events"] >= 5).all()
    shares = users["genre_shares"].apply(lambda s: float(np.sum(s)))
    assert (shares <= 1.001).all()  # top genres only, each rounded to 4 places
    assert users["recent_items"].apply(len).max() <= Settings().recent_items


def test_failed_build_keeps_the_good_catalog(tmp_path: Path, generated_source: Path) -> None:
    good = tmp_path / "good_source"
    shutil.copytree(generated_source, good)
    settings = Settings(db_path=tmp_path / "db", train_ranker=False)
    # a build killed before it published (SIGKILL): its half-written version goes
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()
    half = settings.db_path / "versions" / "v20240101-000000-000"
    half.mkdir(parents=True)
    (half / BUILDING).write_text(f"{killed.pid}\n")
    (half / "content_vector.npy").write_bytes(b"half written")
    first = build(good, "generic", settings)
    assert not half.exists()
    bad = tmp_path / "bad_source"
    shutil.copytree(generated_source, bad)
    events = pq.read_table(bad / "events.parquet").to_pandas()
    events["timestamp"] = events["timestamp"].astype(object)
    events.loc[7, "timestamp"] = "not a time"
    (bad / "events.parquet").unlink()
    events.to_csv(bad / "events.csv", index=False)
    with pytest.raises(InputError, match="timestamp"):
        build(bad, "generic", settings)
    root = CatalogRoot(settings.db_path)
    assert root.current() == first.version
    assert [p.name for p in root.versions_dir.iterdir()] == [first.version]


def test_cli_bad_input_exits_nonzero_without_traceback(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "items.csv").write_text("item_id,title\na,Alpha\nb,Beta\n")
    (source / "events.csv").write_text("user_id,item_id\nu1,a\n")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from pipelines.cli import main; main()",
            "build",
            "--source",
            str(source),
            "--format",
            "generic",
            "--db",
            str(tmp_path / "db"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "events.csv" in result.stderr and "timestamp" in result.stderr
    assert not (tmp_path / "db" / CURRENT).exists()


def test_a_build_leaves_the_ingested_events_as_they_were(
    tmp_path: Path, generated_source: Path
) -> None:
    # The build indexes events on a shallow copy: the caller's frame must not gain its columns.
    raw = load_source(generated_source, "generic")
    before = raw.events.copy()
    build_catalog(raw, Settings(db_path=tmp_path / "db", train_ranker=False), Reporter(quiet=True))
    assert list(raw.events.columns) == EVENT_COLUMNS
    pd.testing.assert_frame_equal(raw.events, before)


def test_the_content_file_holds_the_items_column_row_for_row(built_catalog: Path) -> None:
    version = CatalogRoot(built_catalog).open()
    assert version.manifest.content_file == CONTENT_FILE
    mapped = np.load(version.path / CONTENT_FILE, mmap_mode="r")
    assert mapped.dtype == np.float32
    items = version.table("items").to_arrow().sort_by("item_index")
    column = items["content_vector"].combine_chunks()
    np.testing.assert_array_equal(mapped, column.values.to_numpy().reshape(len(column), -1))
    assert not list(built_catalog.glob(".build-*"))  # the build's scratch directory is gone


def test_text_model_vectors_are_written_into_the_content_file(
    tmp_path: Path, generated_source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Items the source gives no vector are embedded into the mapped file; the ranker snapshot
    reads the same file through a hard link, its runtime mapping it."""
    source = tmp_path / "source"
    shutil.copytree(generated_source, source)
    items = pq.read_table(source / "items.parquet")
    given = items["content_vector"].to_pylist()
    dropped = list(range(0, len(given), 25))  # 120 items for the text model
    for row in dropped:
        given[row] = None
    column = pa.array(given, items.schema.field("content_vector").type)
    pq.write_table(
        items.set_column(items.schema.get_field_index("content_vector"), "content_vector", column),
        source / "items.parquet",
    )
    seen: dict[str, object] = {}
    collect = build_module.collect_training_data

    def spying(snapshot, *args, **kwargs):  # type: ignore[no-untyped-def]
        version_dir = snapshot.path.parent
        seen["linked"] = os.path.samefile(snapshot.path / CONTENT_FILE, version_dir / CONTENT_FILE)
        runtime = asyncio.run(Runtime.open_version(snapshot))
        seen["mapped"] = isinstance(runtime.items.content, np.memmap)
        return collect(snapshot, *args, **kwargs)

    monkeypatch.setattr(build_module, "collect_training_data", spying)
    settings = Settings(
        db_path=tmp_path / "db", ranker_iterations=20, ranker_max_users=60, ranker_negatives=20
    )
    manifest = build(source, "generic", settings)

    assert manifest.text_model.endswith("+source")
    assert seen == {"linked": True, "mapped": True}
    version = CatalogRoot(settings.db_path).open()
    mapped = np.load(version.path / CONTENT_FILE, mmap_mode="r")
    table = version.table("items").to_arrow().sort_by("item_index")
    values = table["content_vector"].combine_chunks()
    np.testing.assert_array_equal(mapped, values.values.to_numpy().reshape(len(values), -1))
    kept = np.setdiff1d(np.arange(len(given)), dropped)
    original = load_source(generated_source, "generic").content_vectors
    assert original is not None
    np.testing.assert_array_equal(mapped[kept], original[kept])
    np.testing.assert_allclose(np.linalg.norm(mapped[dropped], axis=1), 1.0, atol=1e-4)
    assert not np.allclose(mapped[dropped], original[dropped], atol=1e-3)
    assert not list(settings.db_path.glob(".build-*"))


def test_a_failed_build_removes_its_scratch_file(
    tmp_path: Path, generated_source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "db"
    written: list[Path] = []

    def failing(raw, *args, **kwargs):  # type: ignore[no-untyped-def]
        written.extend(root.glob(".build-*/*.npy"))
        raise RuntimeError("the live database is unreadable")

    monkeypatch.setattr(build_module, "with_live_data", failing)
    with pytest.raises(RuntimeError, match="unreadable"):
        build(generated_source, "generic", Settings(db_path=root, train_ranker=False))
    assert len(written) == 1  # ingest wrote the source's vectors there
    assert not written[0].exists() and not list(root.glob(".build-*"))
