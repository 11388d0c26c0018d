import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from app.errors import CatalogError
from app.store import BUILDING, MANIFEST, UNMARKED_GRACE_S, CatalogRoot


def _fake_version(root: CatalogRoot) -> str:
    version, path = root.new_version()
    (path / MANIFEST).write_text(json.dumps({"version": version}))
    return version


def test_publish_switches_current_atomically(tmp_path):
    root = CatalogRoot(tmp_path)
    assert root.current() is None
    first = _fake_version(root)
    root.publish(first)
    assert root.current() == first
    second = _fake_version(root)
    assert root.current() == first  # a new version does not serve until published
    root.publish(second)
    assert root.current() == second
    assert not list(tmp_path.glob(".CURRENT*"))


def test_publish_refuses_version_without_manifest(tmp_path):
    root = CatalogRoot(tmp_path)
    version, _ = root.new_version()
    with pytest.raises(CatalogError, match=r"no manifest\.json"):
        root.publish(version)
    assert root.current() is None


def test_discard_never_removes_serving_version(tmp_path):
    root = CatalogRoot(tmp_path)
    good = _fake_version(root)
    root.publish(good)
    root.discard(good)
    assert (root.versions_dir / good).exists()
    failed, path = root.new_version()
    root.discard(failed)
    assert not path.exists()


def test_prune_keeps_newest_and_serving(tmp_path):
    root = CatalogRoot(tmp_path)
    versions = [_fake_version(root) for _ in range(5)]
    for version in versions:
        root.publish(version)
    root.publish(versions[0])
    removed = root.prune(keep=2)
    left = sorted(p.name for p in root.versions_dir.iterdir())
    assert versions[0] in left and len(left) == 2
    assert set(removed) == set(versions) - set(left)


def test_open_without_catalog_names_the_fix(tmp_path):
    with pytest.raises(CatalogError, match="shortlist build"):
        CatalogRoot(tmp_path / "nowhere").open()


def test_open_with_corrupt_manifest_is_clear(tmp_path):
    root = CatalogRoot(tmp_path)
    version, path = root.new_version()
    (path / MANIFEST).write_text("{not json")
    with pytest.raises(CatalogError, match="unreadable"):
        root.open(version)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_dead_build_s_version_is_removed_and_a_running_one_is_left_alone(tmp_path):
    root = CatalogRoot(tmp_path)
    serving = _fake_version(root)
    root.publish(serving)
    running, _ = root.new_version()  # this process: still building
    dead, dead_path = root.new_version()
    (dead_path / BUILDING).write_text(f"{_dead_pid()}\n")  # killed before it published
    (dead_path / "content_vector.npy").write_bytes(b"half")
    unmarked, unmarked_path = root.new_version()  # an older build's, no marker, no manifest
    (unmarked_path / BUILDING).unlink()
    recent, recent_path = root.new_version()
    (recent_path / BUILDING).unlink()
    old = time.time() - UNMARKED_GRACE_S - 60
    os.utime(unmarked_path, (old, old))
    assert root.building(running) and not root.building(dead) and not root.building(serving)
    elsewhere, elsewhere_path = root.new_version()  # a build on another host of a shared root
    (elsewhere_path / BUILDING).write_text(f"{_dead_pid()} another-host\n")
    assert root.building(elsewhere)  # its process cannot be seen from here: left alone
    shutil.rmtree(elsewhere_path)
    assert root.abandoned() == sorted([dead, unmarked])
    assert root.remove_abandoned() == sorted([dead, unmarked])
    left = sorted(p.name for p in root.versions_dir.iterdir())
    assert left == sorted([serving, running, recent])
    assert root.current() == serving


def test_prune_neither_counts_nor_removes_a_version_being_built(tmp_path):
    root = CatalogRoot(tmp_path)
    building, _ = root.new_version()  # older than every published one
    published = [_fake_version(root) for _ in range(3)]
    for version in published:
        root.publish(version)
    assert not (root.versions_dir / published[-1] / BUILDING).exists()
    removed = root.prune(keep=2)
    assert removed == [published[0]]
    left = sorted(p.name for p in root.versions_dir.iterdir())
    assert left == sorted([building, *published[1:]])
