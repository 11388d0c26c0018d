"""The README's configuration table lists every setting with its real default."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from app.settings import Settings
from tests.conftest import ROOT

ROW = re.compile(r"^\| `SHORTLIST_([A-Z0-9_]+)` \| (.+?) \| (.+) \|$")


def _table() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            rows[match.group(1).lower()] = match.group(2)
    return rows


def _shown(default: Any) -> str:
    if default is None:
        return "(unset)"
    if isinstance(default, BaseModel):
        return "`(see below)`"
    if isinstance(default, Path):
        return f"`{default.as_posix()}`"
    return f"`{default}`"


def test_every_setting_is_in_the_readme_with_its_default() -> None:
    rows = _table()
    fields = Settings.model_fields
    assert sorted(rows) == sorted(fields), "README table and Settings differ"
    for name, info in fields.items():
        default = info.get_default(call_default_factory=True)
        assert rows[name] == _shown(default), f"SHORTLIST_{name.upper()}: README says {rows[name]}"


def test_a_dotenv_file_sets_settings(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SHORTLIST_LOG_LEVEL", raising=False)
    (tmp_path / ".env").write_text("SHORTLIST_LOG_LEVEL=WARNING\nSHORTLIST_KEEP_VERSIONS=5\n")
    settings = Settings()
    assert (settings.log_level, settings.keep_versions) == ("WARNING", 5)
