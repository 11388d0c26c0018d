"""The on-disk catalog: versioned LanceDB databases under one root, switched atomically.

Layout of a catalog root (`Settings.db_path`):

    CURRENT                 the serving version's id, replaced atomically (os.replace)
    versions/<id>/          one complete build: LanceDB tables items, users, events,
                            manifest.json, content_vector.npy (the items' content vectors,
                            memory-mapped when served) and model files (numpy .npy, CatBoost .cbm);
                            until it is published, also .building (its build's process id and host)
    .build-<pid>-<n>/       a running build's scratch files (pipelines.content_file)
    live/                   what the server was told since: LanceDB tables events (every
                            acknowledged event) and items (every upserted item); it outlives
                            versions, and each new version is brought up to date from it

A build writes a new version directory and only then points CURRENT at it, so a failed build
never replaces a good catalog, and a server reading CURRENT sees one consistent version. A build
that dies unannounced (SIGKILL, the OOM killer) leaves its version unfinished, up to 19 GB at
10M items: the next build removes it, and pruning neither counts nor touches versions a running
build is still writing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa
from pydantic import BaseModel, Field

from app.errors import CatalogError

ITEMS, USERS, EVENTS = "items", "users", "events"
MANIFEST = "manifest.json"
# Item-item relation tables (app.item_relations), two .npy files each:
# item_knn: neighbours (n_items, k) and their weights; ease and ease_top: covered items (m,) and
# weights (m, m) regularised for recall at depth (the ease source) and for the top (a feature).
RELATIONS = {
    "item_knn": ("item_neighbours.npy", "item_neighbour_scores.npy"),
    "ease": ("ease_items.npy", "ease_weights.npy"),
    "ease_top": ("ease_items.npy", "ease_top_weights.npy"),  # absent: the same as ease
}
# The items' content vectors, (n_items, dim) float32, row = item_index, as the items table's
# content_vector column holds them: served memory-mapped, so no process holds them in its heap.
CONTENT_FILE = "content_vector.npy"
CURRENT = "CURRENT"
LIVE = "live"
BUILDING = ".building"  # in a version directory until published: "<pid> <host>" of its build
# An unpublished version without BUILDING (made before it existed) counts as abandoned only
# once it has not changed for this long.
UNMARKED_GRACE_S = 3600.0
CONTENT_DIM = 384


def items_schema(content_dim: int, cf_dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("item_id", pa.string(), nullable=False),
            pa.field("item_index", pa.int32(), nullable=False),
            pa.field("title", pa.string()),
            pa.field("description", pa.string()),
            pa.field("genres", pa.list_(pa.string())),
            pa.field("series", pa.string()),
            pa.field("series_position", pa.int32()),
            pa.field("released", pa.date32()),
            pa.field("first_seen", pa.timestamp("s")),
            pa.field("n_events", pa.int64()),
            pa.field("n_users", pa.int64()),
            pa.field("mean_rating", pa.float32()),
            pa.field("popularity", pa.float32()),
            pa.field("popularity_decayed", pa.float32()),
            pa.field("popularity_pct", pa.float32()),
            pa.field("in_cf", pa.bool_()),
            pa.field("content_vector", pa.list_(pa.float32(), content_dim)),
            pa.field("cf_vector", pa.list_(pa.float32(), cf_dim)),
        ]
    )


def users_schema(content_dim: int, cf_dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("user_id", pa.string(), nullable=False),
            pa.field("user_index", pa.int32(), nullable=False),
            pa.field("n_events", pa.int64()),
            pa.field("n_positive", pa.int64()),
            pa.field("first_seen", pa.timestamp("s")),
            pa.field("last_seen", pa.timestamp("s")),
            pa.field("active_days", pa.int32()),
            pa.field("top_genres", pa.list_(pa.string())),
            pa.field("genre_shares", pa.list_(pa.float32())),
            pa.field("recent_items", pa.list_(pa.string())),
            pa.field("dismissed_items", pa.list_(pa.string())),
            pa.field("consumed", pa.list_(pa.int32())),
            pa.field("history_items", pa.list_(pa.int32())),
            pa.field("history_weights", pa.list_(pa.float32())),
            pa.field("cf_vector", pa.list_(pa.float32(), cf_dim)),
            pa.field("content_vector", pa.list_(pa.float32(), content_dim)),
        ]
    )


EVENTS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("s"), nullable=False),
        pa.field("event", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("device", pa.string()),
        pa.field("weight", pa.float32()),
    ]
)


class IndexChoice(BaseModel):
    """The ANN index kept for one vector column, and the search parameters that reach the target."""

    column: str
    metric: str
    kind: str = Field(description="'exact' (no index) or a LanceDB index type, e.g. IVF_PQ.")
    params: dict[str, Any] = Field(default_factory=dict, description="Build parameters.")
    search: dict[str, int] = Field(default_factory=dict, description="nprobes/refine_factor/ef.")
    recall_at_k: float
    k: int
    p50_ms: float
    p99_ms: float
    tried: list[dict[str, Any]] = Field(default_factory=list)


class Manifest(BaseModel):
    """What a version holds and how it was made."""

    version: str
    created_at: float
    source: str
    format: str
    data_fingerprint: str
    counts: dict[str, int]
    text_model: str
    content_dim: int
    content_file: str | None = Field(
        None,
        description="The content vectors as a .npy file (CONTENT_FILE); None: a version built "
        "before there was one, whose vectors are read from the items table.",
    )
    items_table_version: int | None = Field(
        None,
        description="The items table's version when the build ended: a table past it holds "
        "upserted items, whose vectors the content file lacks.",
    )
    cf: dict[str, Any]
    cf_dim: int
    reference_time: int = Field(description="Unix seconds of the newest training event.")
    rating_max: float | None = Field(None, description="Top of the training events' rating scale.")
    live_watermark: int = Field(
        -1, description="Sequence number of the newest live event the build trained on; -1: none."
    )
    indexes: dict[str, IndexChoice] = Field(default_factory=dict)
    relations: dict[str, Any] = Field(
        default_factory=dict, description="Item-item relation tables built, and how."
    )
    fusion: dict[str, Any] | None = Field(
        None, description="Stage-1 fusion measured on the ranker snapshot (None: reciprocal rank)."
    )
    ranker: dict[str, Any] | None = Field(None, description="How the stage-2 model was trained.")
    steps: list[dict[str, Any]] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class CatalogRoot:
    """A catalog root directory and its versions."""

    path: Path

    @property
    def versions_dir(self) -> Path:
        return self.path / "versions"

    @property
    def live_dir(self) -> Path:
        return self.path / LIVE

    def new_version(self) -> tuple[str, Path]:
        """Reserve a fresh, empty version directory (not yet serving)."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        for n in range(1000):
            version = f"v{stamp}-{n:03d}"
            path = self.versions_dir / version
            try:
                path.mkdir()
            except FileExistsError:
                continue
            (path / BUILDING).write_text(f"{os.getpid()} {socket.gethostname()}\n")
            return version, path
        raise CatalogError(f"cannot reserve a new version directory in {self.versions_dir}")

    def building(self, version: str) -> bool:
        """Whether a process is still building `version`: one running on this machine, or any
        on another (a catalog root on a shared filesystem: its processes cannot be seen)."""
        marker = self.versions_dir / version / BUILDING
        try:
            pid, _, host = marker.read_text().strip().partition(" ")
        except OSError:
            return False
        if host and host != socket.gethostname():
            return True
        return pid.isdigit() and process_running(int(pid))

    def abandoned(self) -> list[str]:
        """Unpublished versions whose build died: marked by a process no longer running, or
        (made before the marker) holding no manifest and unchanged for UNMARKED_GRACE_S."""
        if not self.versions_dir.exists():
            return []
        current, found = self.current(), []
        for path in sorted(p for p in self.versions_dir.iterdir() if p.is_dir()):
            if path.name == current or self.building(path.name):
                continue
            marked = (path / BUILDING).exists()
            unchanged_s = time.time() - path.stat().st_mtime
            if marked or (not (path / MANIFEST).exists() and unchanged_s > UNMARKED_GRACE_S):
                found.append(path.name)
        return found

    def remove_abandoned(self) -> list[str]:
        """Delete the versions of builds that died (see `abandoned`); returns the removed."""
        removed = self.abandoned()
        for version in removed:
            shutil.rmtree(self.versions_dir / version, ignore_errors=True)
        return removed

    def current(self) -> str | None:
        pointer = self.path / CURRENT
        if not pointer.exists():
            return None
        version = pointer.read_text().strip()
        return version or None

    def publish(self, version: str) -> None:
        """Point CURRENT at `version` atomically; the version must hold a manifest."""
        if not (self.versions_dir / version / MANIFEST).exists():
            raise CatalogError(f"version {version} has no {MANIFEST}; refusing to publish it")
        (self.versions_dir / version / BUILDING).unlink(missing_ok=True)  # finished
        tmp = self.path / f".{CURRENT}.{os.getpid()}.tmp"
        tmp.write_text(version + "\n")
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.path / CURRENT)

    def discard(self, version: str) -> None:
        """Remove a version that never served (a failed build)."""
        if version != self.current():
            shutil.rmtree(self.versions_dir / version, ignore_errors=True)

    def prune(self, keep: int) -> list[str]:
        """Delete the oldest published versions beyond `keep`, never the serving one nor one a
        running build is writing; returns the removed."""
        if not self.versions_dir.exists():
            return []
        current = self.current()
        versions = sorted(
            p.name
            for p in self.versions_dir.iterdir()
            if p.is_dir() and (p / MANIFEST).exists() and not (p / BUILDING).exists()
        )
        removable = [v for v in versions if v != current]
        excess = len(versions) - keep
        removed = removable[: max(0, excess)]
        for version in removed:
            shutil.rmtree(self.versions_dir / version, ignore_errors=True)
        return removed

    def open(self, version: str | None = None) -> CatalogVersion:
        version = version or self.current()
        if version is None:
            raise CatalogError(
                f"no catalog at {self.path}: run `shortlist build --source PATH --format ...` first"
            )
        return CatalogVersion.open(self.versions_dir / version)


@dataclass
class CatalogVersion:
    """One built version: its manifest and LanceDB connection."""

    path: Path
    manifest: Manifest
    db: lancedb.DBConnection

    @classmethod
    def open(cls, path: Path) -> CatalogVersion:
        manifest_path = path / MANIFEST
        if not manifest_path.exists():
            raise CatalogError(f"{path} is not a catalog version: {MANIFEST} is missing")
        try:
            manifest = Manifest.model_validate(json.loads(manifest_path.read_text()))
        except (ValueError, OSError) as exc:
            raise CatalogError(f"{manifest_path} is unreadable: {exc}") from exc
        return cls(path=path, manifest=manifest, db=lancedb.connect(str(path)))

    def table(self, name: str) -> Any:
        try:
            return self.db.open_table(name)
        except (ValueError, FileNotFoundError) as exc:
            raise CatalogError(f"table '{name}' is missing from {self.path}") from exc


def process_running(pid: int) -> bool:
    """Whether a process with this id runs on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_manifest(path: Path, manifest: Manifest) -> None:
    tmp = path / f".{MANIFEST}.tmp"
    tmp.write_text(manifest.model_dump_json(indent=2))
    os.replace(tmp, path / MANIFEST)
