import json

import pytest

from app.errors import CatalogError
from app.store import MANIFEST, CatalogRoot


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
