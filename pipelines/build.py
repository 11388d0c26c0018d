"""`shortlist build`: from a source directory to a new, published catalog version.

Steps: ingest -> embed -> cf -> stats -> write -> index -> publish. Everything is written into a
fresh version directory; CURRENT moves to it only after every step succeeded, so a failed build
leaves the serving catalog untouched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.embedding import TextEncoder, item_text
from app.errors import InputError
from app.events import event_weights
from app.settings import Settings
from app.store import (
    CONTENT_FILE,
    RELATIONS,
    CatalogRoot,
    CatalogVersion,
    IndexChoice,
    Manifest,
    write_manifest,
)
from pipelines import ease
from pipelines.cf import endorsement_matrix, train_cf
from pipelines.content_file import flush, nan_rows, open_read, scratch_dir, settle
from pipelines.index import choose_index, probe_queries
from pipelines.ingest import load_source
from pipelines.ingest.raw import RawCatalog
from pipelines.live_data import with_live_data
from pipelines.neighbours import MAX_ITEMS as MAX_NEIGHBOUR_ITEMS
from pipelines.neighbours import WIDEST_ITEMS as WIDEST_NEIGHBOUR_ITEMS
from pipelines.neighbours import item_neighbours
from pipelines.ranker import collect_training_data, train_ranker
from pipelines.resident_memory import hand_back, set_aside
from pipelines.split import temporal_split
from pipelines.stats import item_stats, user_stats
from pipelines.steps import Reporter
from pipelines.tables import write_events, write_items, write_users

EMBED_ROWS = 65_536  # texts embedded per chunk written into the mapped vectors file


def fingerprint(raw: RawCatalog) -> str:
    digest = hashlib.sha256()
    digest.update(
        pd.util.hash_pandas_object(raw.items["item_id"], index=False).to_numpy().tobytes()
    )
    events = raw.events[["user_id", "item_id", "timestamp", "event"]]
    digest.update(pd.util.hash_pandas_object(events, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def content_vectors(
    raw: RawCatalog,
    settings: Settings,
    reporter: Reporter,
    out: Path,
    scratch: Path | None = None,
) -> tuple[np.ndarray, str]:
    """The source's vectors where given, the text model's for every other item, as the `.npy`
    file `out`, returned mapped read-only. A writable mapped file in `scratch` (what ingest
    wrote) is moved to `out` and filled there; any other array is copied, a chunk at a time."""
    n = len(raw.items)
    given = raw.content_vectors
    missing = np.ones(n, dtype=bool) if given is None else nan_rows(given)
    with reporter.step("embed", total=int(missing.sum())) as step:
        if not missing.any():
            assert given is not None
            step.note = "vectors given by the source"
            flush(settle(given, out, scratch, n, given.shape[1]))
            return open_read(out), "source"
        encoder = TextEncoder(settings.text_model, settings.threads)
        if given is not None and given.shape[1] != encoder.dim:
            raise InputError(
                f"content_vector has {given.shape[1]} dimensions but the text model makes "
                f"{encoder.dim}; give every item a vector or none",
                file="items.parquet",
                column="content_vector",
            )
        rows = raw.items.loc[missing]
        texts = [
            item_text(t, g, d, tg)
            for t, g, d, tg in zip(
                rows["title"], rows["genres"], rows["description"], rows["tags"], strict=True
            )
        ]
        vectors = settle(given, out, scratch, n, encoder.dim)
        # Shortest texts first, as the encoder orders them itself: chunks of whole encoder
        # chunks keep its batches, and so its vectors, what one call over all texts makes.
        targets = np.flatnonzero(missing)
        order = np.argsort([len(t) for t in texts], kind="stable")
        per_call = settings.embed_batch_size * 8  # TextEncoder.encode's own chunk
        chunk = per_call * max(1, EMBED_ROWS // per_call)
        for start in range(0, len(order), chunk):
            part = np.sort(order[start : start + chunk])
            vectors[targets[part]] = encoder.encode(
                [texts[i] for i in part], settings.embed_batch_size, on_batch=step.advance
            )
        flush(vectors)
        del vectors
        step.note = f"{settings.text_model}"
        model = settings.text_model if given is None else f"{settings.text_model}+source"
        return open_read(out), model


def build(source: Path, fmt: str, settings: Settings, reporter: Reporter | None = None) -> Manifest:
    """Read a source directory and build a catalog version from it (see build_catalog).

    The source's content vectors go to a mapped file in a scratch directory of the catalog root
    (pipelines.content_file), which ends in the version directory; the scratch directory is
    removed afterwards, and with it whatever a failed build left there."""
    reporter = reporter or Reporter(quiet=True)
    started = time.time()
    with scratch_dir(Path(settings.db_path)) as scratch:
        with reporter.step("ingest") as step:
            raw = load_source(source, fmt, scratch)
            step.rows = len(raw.events)
            step.note = f"{len(raw.items):,} items"
            if raw.unknown_item_events:
                step.note += f", {raw.unknown_item_events:,} events for unknown items skipped"
        with reporter.step("live") as step:
            raw, watermark, counts = with_live_data(raw, settings.db_path, scratch)
            step.rows = counts.get("live_events", 0)
            step.note = (
                f"{counts['live_events']:,} live events, {counts['live_items']:,} upserted items "
                f"(up to #{watermark})"
                if counts
                else "no live data"
            )
        return build_catalog(
            raw, settings, reporter, started, live_watermark=watermark, scratch=scratch
        )


def build_catalog(
    raw: RawCatalog,
    settings: Settings,
    reporter: Reporter,
    started: float | None = None,
    live_watermark: int = -1,
    scratch: Path | None = None,
) -> Manifest:
    """Embed, train, index and publish a new version from ingested data.

    `live_watermark`: the newest live event in `raw` (see pipelines.live_data), -1 for none.
    `scratch`: the build's scratch directory; content vectors mapped from a file there are
    moved into the version (`CONTENT_FILE`), others are copied into it.
    """
    started = time.time() if started is None else started
    if raw.events.empty:
        raise InputError("no events left to learn from", file=raw.source)

    root = CatalogRoot(settings.db_path)
    root.path.mkdir(parents=True, exist_ok=True)
    abandoned = root.remove_abandoned()  # versions of builds that died unannounced
    version, path = root.new_version()
    try:
        vectors, text_model = content_vectors(raw, settings, reporter, path / CONTENT_FILE, scratch)
        learned = _learn_on_snapshot(raw, vectors, text_model, settings, reporter, path)
        manifest = _build_version(
            raw,
            raw.events,
            vectors,
            text_model,
            settings,
            reporter,
            version,
            path,
            ease_lambdas=learned.ease_lambdas,
            known_indexes=learned.indexes,
            known_cf=learned.cf,
        )
        manifest.ranker = learned.ranker
        manifest.fusion = learned.fusion
        manifest.live_watermark = live_watermark
        write_manifest(path, manifest)
        with reporter.step("publish") as step:
            root.publish(version)
            removed = root.prune(settings.keep_versions)
            step.note = f"{version} now serving" + (f", pruned {len(removed)}" if removed else "")
            if abandoned:
                step.note += f", removed {len(abandoned)} abandoned by dead builds"
    except BaseException:
        root.discard(version)
        raise
    manifest.steps = [asdict(t) for t in reporter.timings]
    manifest.steps.append(
        {
            "name": "total",
            "rows": 0,
            "seconds": time.time() - started,
            "peak_rss_mib": reporter.peak_rss_mib(),
            "peak_anon_mib": max((t.peak_anon_mib for t in reporter.timings), default=0.0),
        }
    )
    write_manifest(path, manifest)
    return manifest


@dataclass
class SnapshotLearned:
    """What the ranker snapshot (earlier events, judged by later ones) teaches the full build."""

    ranker: dict[str, Any] | None = None  # how the stage-2 model was trained
    ease_lambdas: dict[str, float] | None = None  # EASE's lambdas, chosen on the later events
    indexes: dict[str, IndexChoice] | None = None  # ANN indexes chosen on the snapshot
    cf: dict[str, Any] | None = None  # the snapshot's CF entry: its algorithm and measurements
    fusion: dict[str, Any] | None = None  # stage-1 fusion hit rates (manifest entry)


def _learn_on_snapshot(
    raw: RawCatalog,
    vectors: np.ndarray,
    text_model: str,
    settings: Settings,
    reporter: Reporter,
    path: Path,
) -> SnapshotLearned:
    """Build a snapshot from earlier events; measure the fusion and train the ranker on its
    candidates against the later events; drop it."""
    if not settings.train_ranker:
        return SnapshotLearned()
    keep = temporal_split(raw.events, settings.ranker_holdout)
    later = raw.events.loc[~keep]
    if later["user_id"].nunique() < 20:
        with reporter.step("ranker") as step:
            step.note = "skipped: fewer than 20 users with later events"
        return SnapshotLearned()
    snapshot = path / "_ranker_snapshot"
    snapshot.mkdir()
    try:
        # the same vectors: a second name for the version's file, not a second 15 GB (at 10M)
        os.link(path / CONTENT_FILE, snapshot / CONTENT_FILE)
        snapshot_manifest = _build_version(
            raw,
            raw.events.loc[keep],
            vectors,
            text_model,
            settings,
            reporter,
            "ranker-snapshot",
            snapshot,
            label="snapshot ",
            later=later,
        )
        ease_lambdas = snapshot_manifest.relations.get("ease", {}).get("lambdas")
        rng = np.random.default_rng(settings.seed)
        top_rating = rating_max(raw.events)
        # the serving runtime loaded below is the build's peak: the source's frames wait on disk
        with reporter.step("ranker data") as step, set_aside(raw, ("items", "events"), snapshot):
            data = collect_training_data(
                CatalogVersion.open(snapshot),
                later,
                settings.ranker_max_users,
                top_rating,
                rng,
                settings.ranker_negatives,
                step,
                settings.content_int8_above,
            )
            step.rows = len(data.labels)
        hand_back()  # the snapshot's serving runtime: about 5 GB at 1M items
        learned = SnapshotLearned(
            ease_lambdas=ease_lambdas,
            indexes=snapshot_manifest.indexes,
            cf=snapshot_manifest.cf,
            fusion=data.fusion.to_manifest() if data.fusion is not None else None,
        )
        if len(np.unique(data.groups)) < 10:
            return learned
        with reporter.step("ranker") as step:
            info = train_ranker(
                data,
                path,
                iterations=settings.ranker_iterations,
                depth=settings.ranker_depth,
                learning_rate=settings.ranker_learning_rate,
                seed=settings.seed,
                threads=settings.threads,
                folds=settings.ranker_folds,
            )
            step.rows = info["rows"]
            step.note = (
                f"YetiRank {info['folds']} folds, {info['iterations']} trees, out-of-fold "
                f"NDCG@10 {info['valid_ndcg@10']:.3f} vs stage-1 order "
                f"{info['valid_ndcg@10_stage1_order']:.3f}"
                + ("" if info["shipped"] else ": not shipped, stage 1's order serves")
            )
        learned.ranker = info
        return learned
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)
        hand_back()


def _build_version(
    raw: RawCatalog,
    events: pd.DataFrame,
    vectors: np.ndarray,
    text_model: str,
    settings: Settings,
    reporter: Reporter,
    version: str,
    path: Path,
    label: str = "",
    later: pd.DataFrame | None = None,
    ease_lambdas: dict[str, float] | None = None,
    known_indexes: dict[str, IndexChoice] | None = None,
    known_cf: dict[str, Any] | None = None,
) -> Manifest:
    """One catalog version from `events`. EASE's lambdas are `ease_lambdas` if given, else
    chosen on `later` events (the ranker snapshot), else on an inner temporal split of
    `events`. `known_cf` (the snapshot manifest's `cf` entry) fixes the CF algorithm the
    snapshot chose instead of measuring ALS against BPR again, as `known_indexes` does for
    the ANN indexes: at catalog scale the choice costs as much as the final fit."""
    items = raw.items.reset_index(drop=True)
    item_ids = items["item_id"].to_numpy(dtype=object)
    item_index = pd.Index(item_ids)
    # A shallow copy: the index columns are added to it alone (pandas copies on write), where a
    # deep copy held a second copy of every event (1 GB at 10M events) through the whole build.
    events = events.copy(deep=False)
    events["item_index"] = item_index.get_indexer(events["item_id"])
    user_codes, user_ids = pd.factorize(events["user_id"], sort=True)
    events["user_index"] = user_codes
    n_items, n_users = len(items), len(user_ids)
    top_rating = rating_max(events)
    weights = event_weights(events["event"].to_numpy(), events["value"].to_numpy(), top_rating)
    reference_time = int(events["timestamp"].max())

    with reporter.step(f"{label}cf") as step:
        cf = train_cf(
            events["user_index"].to_numpy(),
            events["item_index"].to_numpy(),
            weights,
            events["timestamp"].to_numpy(),
            n_users,
            n_items,
            algorithm=known_cf["algorithm"] if known_cf else settings.cf_algorithm,
            factors=settings.cf_factors,
            iterations=settings.cf_iterations,
            regularization=settings.cf_regularization,
            alpha=settings.cf_alpha,
            threads=settings.threads,
            seed=settings.seed,
            step=step,
        )
        step.rows = int((weights > 0).sum())
        if known_cf:
            cf.measurements = dict(known_cf.get("measurements", {}))
        measured = ", ".join(f"{k}={v:.3f}" for k, v in cf.measurements.items() if "hit" in k)
        step.note = f"{cf.algorithm} chosen" + (f" ({measured})" if measured else "")
        if known_cf:
            step.note += " on the snapshot"

    audience = endorsement_matrix(
        events["user_index"].to_numpy(), events["item_index"].to_numpy(), weights, n_users, n_items
    )
    relations: dict[str, dict[str, Any]] = {}
    with reporter.step(f"{label}neighbours") as step:
        # written straight into the version's files: (items, k) each, 4 GB at 10M items
        shape = (n_items, settings.neighbours_k)
        neighbours = _relation_file(path, "item_knn", 0, np.int32, shape)
        neighbour_scores = _relation_file(path, "item_knn", 1, np.float32, shape)
        item_neighbours(
            audience,
            settings.neighbours_k,
            settings.neighbours_shrink,
            out=(neighbours, neighbour_scores),
        )
        step.rows = int(sum((neighbours[s] >= 0).sum() for s in _row_blocks(n_items)))
        neighbours.flush()
        neighbour_scores.flush()
        del neighbours, neighbour_scores
        relations["item_knn"] = {"k": settings.neighbours_k}
        if n_items > MAX_NEIGHBOUR_ITEMS:
            step.note = f"the {WIDEST_NEIGHBOUR_ITEMS:,} widest-audience items"

    with reporter.step(f"{label}ease") as step:
        model = None
        if settings.ease_max_items > 0:
            valid = None
            if ease_lambdas is None and later is not None:
                valid = ease.validation_matrix(later, user_ids, item_index, top_rating, audience)
            model = ease.fit_on_events(
                audience,
                events,
                weights,
                lambdas=ease_lambdas,
                valid=valid,
                max_items=settings.ease_max_items,
                holdout=settings.ranker_holdout,
                depth=settings.pipeline.candidates.ease.limit,
            )
        if model is None:
            step.note = "skipped: off, or no item has two users"
        else:
            _save_relations(path, "ease", model.items, model.deep)
            if model.top is not model.deep:
                _save_relations(path, "ease_top", model.items, model.top)
            step.rows = len(model.items)
            step.note = f"{len(model.items):,} items, lambdas " + ", ".join(
                f"{k} {v:.0f}" for k, v in model.lambdas.items()
            )
            relations["ease"] = {
                "items": len(model.items),
                "lambdas": model.lambdas,
                "validation": model.validation,
            }

    with reporter.step(f"{label}stats", total=n_users) as step:
        istats = item_stats(
            events, weights, n_items, reference_time, settings.popularity_half_life_days
        )
        genres = items["genres"].tolist()
        ustats = user_stats(
            events,
            weights,
            item_ids,
            genres,
            vectors,
            n_users,
            settings.recent_items,
            settings.profile_half_life_days,
            settings.history_items,
        )
        step.advance(n_users)

    with reporter.step(f"{label}write", total=n_items + n_users + len(events)) as step:
        items_table = write_items(path, items, istats, vectors, cf.item_factors, step)
        users_table = write_users(path, user_ids, ustats, cf.user_factors, step)
        write_events(path, events, weights, step)

    rng = np.random.default_rng(settings.seed)
    indexes = {}
    with reporter.step(f"{label}index") as step:
        for column, item_vectors, user_vectors in (
            ("cf_vector", cf.item_factors, cf.user_factors),
            ("content_vector", vectors, ustats.content_profile),
        ):
            queries = probe_queries(user_vectors, item_vectors, settings.ann_probe_queries, rng)
            indexes[column] = choose_index(
                items_table,
                column,
                item_vectors,
                queries,
                k=settings.ann_k,
                recall_target=settings.ann_recall_target,
                exact_max_rows=settings.ann_exact_max_rows,
                step=step,
                known=(known_indexes or {}).get(column),
                directory=path,
                seed=settings.seed,
            )
        step.rows = n_items
        step.note = ", ".join(
            f"{c}: {i.kind} recall@{i.k}={i.recall_at_k:.3f} p50={i.p50_ms:.1f}ms"
            for c, i in indexes.items()
        )
        del users_table

    manifest = Manifest(
        version=version,
        created_at=time.time(),
        source=raw.source,
        format=raw.format,
        data_fingerprint=fingerprint(raw),
        counts={
            "items": n_items,
            "users": n_users,
            "events": len(events),
            "unknown_item_events": raw.unknown_item_events,
            "positive_events": int((weights >= 1.0).sum()),
            "items_in_cf": int((np.abs(cf.item_factors).sum(axis=1) > 0).sum()),
        },
        text_model=text_model,
        content_dim=int(vectors.shape[1]),
        content_file=CONTENT_FILE,
        items_table_version=int(items_table.version),
        cf={"algorithm": cf.algorithm, "measurements": cf.measurements, "params": cf.params},
        cf_dim=int(cf.item_factors.shape[1]),
        reference_time=reference_time,
        rating_max=top_rating,
        indexes=indexes,
        relations=relations,
        settings=settings.model_dump(mode="json"),
    )
    write_manifest(path, manifest)
    return manifest


def _relation_file(
    path: Path, name: str, which: int, dtype: Any, shape: tuple[int, int]
) -> np.memmap:
    """A relation's `which` file (0: items, 1: weights), created memory-mapped for writing."""
    file = path / RELATIONS[name][which]
    return np.lib.format.open_memmap(file, mode="w+", dtype=dtype, shape=shape)


def _row_blocks(n: int, block: int = 1 << 20) -> list[slice]:
    return [slice(start, start + block) for start in range(0, n, block)]


def _save_relations(path: Path, name: str, index: np.ndarray, weights: np.ndarray) -> None:
    index_file, weights_file = RELATIONS[name]
    np.save(path / index_file, index, allow_pickle=False)
    np.save(path / weights_file, weights, allow_pickle=False)


def rating_max(events: pd.DataFrame) -> float:
    ratings = events.loc[events["event"] == "rating", "value"]
    top = float(ratings.max()) if ratings.notna().any() else 5.0
    return 5.0 if top <= 5.0 else 10.0 if top <= 10.0 else 100.0
