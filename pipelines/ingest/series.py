"""Series (franchises) found in titles, and positions within a series.

MovieLens has no series column, so series are read from titles. A title's *base* is its
lower-cased text without trailing parenthesised parts (year, a.k.a.). Titles are grouped by key:

- a trailing sequel number is removed: "toy story 2", "rocky ii", "the godfather: part ii",
  "kill bill: vol. 2" and, before a subtitle, "star trek ii: the wrath of khan" -> "star trek";
  a number >= 2 is a sequel marker, 1 is not ("kill bill: vol. 1" is the first of its series);
- otherwise, a subtitle (after ": " or " - ") is removed when the part before it is the key of
  another title: "star trek: generations" joins "star trek"; that subtitle is a sequel marker;
- otherwise the base itself is the key.

A group is a series when it has at least two titles and at least one sequel marker, so remakes
("Hamlet (1948)", "Hamlet (1990)") stay apart. A marked title that shares no genre with the rest
of its group is left out of it ("Hamlet 2", a comedy, is no sequel of the dramas). The series id
is the key; positions are 1-based, ordered by release date, then title.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

_TRAILING_GROUPS = re.compile(r"(\s*\([^()]*\))+\s*$")
_LEADING_ARTICLE = re.compile(r"^(the|a|an) ")
_SUBTITLE = re.compile(r":\s+|\s+-\s+")
_NUMBERED = re.compile(
    r"^(?P<stem>.+?)(?:\s*[:,]\s*|\s+-\s+|\s+)"
    r"(?:(?P<keyword>part|chapter|episode|vol\.?|volume)\s+)?"
    r"(?P<number>\d{1,2}|[ivx]+|one|two|three|four|five|six|seven|eight|nine|ten)$"
)
_WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
_ROMAN = [
    "i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x",
    "xi", "xii", "xiii", "xiv", "xv", "xvi", "xvii", "xviii", "xix", "xx",
]  # fmt: skip
# Without "part"/"chapter"/... a bare number is a sequel number only when small ("Apollo 13"
# is no sequel) and a bare "X" is a letter ("Malcolm X", "Project X").
_MAX_BARE_NUMBER = 12


class _Key(NamedTuple):
    key: str  # the group key: the base without sequel number or subtitle
    number: int | None  # its sequel number, if any
    subtitle: bool  # a subtitle after another title's key

    @property
    def marker(self) -> bool:
        return self.subtitle or (self.number or 0) >= 2

    @property
    def plain(self) -> bool:
        return self.number is None and not self.subtitle


def title_base(title: str) -> str:
    """Lower-cased title without trailing parenthesised parts, leading article, extra spaces."""
    base = _TRAILING_GROUPS.sub("", title) or title
    base = " ".join(base.lower().split()).strip(" :,-")
    return _LEADING_ARTICLE.sub("", base) or base


def split_number(base: str) -> tuple[str, int] | None:
    """("toy story", 2) for "toy story 2"; None when the base ends in no sequel number."""
    match = _NUMBERED.match(base)
    if match is None:
        return None
    text, keyword = match["number"], match["keyword"]
    if text.isdigit():
        number = int(text)
        if not keyword and number > _MAX_BARE_NUMBER:
            return None
    elif text in _ROMAN and (keyword or text != "x"):
        number = _ROMAN.index(text) + 1
    elif text in _WORDS and keyword:
        number = _WORDS.index(text) + 1
    else:
        return None
    return (match["stem"].strip(" :,-"), number) if number >= 1 else None


def _prefixes(base: str) -> list[str]:
    """Parts of a base before each subtitle separator, longest first."""
    return [base[: m.start()] for m in reversed(list(_SUBTITLE.finditer(base))) if m.start() > 0]


def _keys(bases: list[str]) -> list[_Key]:
    numbered: list[_Key | None] = []
    for base in bases:
        found = None
        for part in [base, *_prefixes(base)]:
            split = split_number(part)
            if split is not None:
                found = _Key(split[0], split[1], False)
                break
        numbered.append(found)
    known = {key.key for key in numbered if key is not None}
    known.update(base for base, key in zip(bases, numbered, strict=True) if key is None)
    keys = []
    for base, key in zip(bases, numbered, strict=True):
        if key is None:
            prefix = next((p for p in _prefixes(base) if p in known), None)
            key = _Key(prefix, None, True) if prefix is not None else _Key(base, None, False)
        keys.append(key)
    return keys


def detect_series(
    titles: Sequence[str],
    released: np.ndarray,
    genres: Sequence[Sequence[str]] | None = None,
) -> tuple[list[str | None], np.ndarray]:
    """Series id (or None) and 1-based position (or NaN) of each title."""
    bases = [title_base(t) for t in titles]
    keys = _keys(bases)
    released = np.asarray(released, dtype="datetime64[s]")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        groups[key.key].append(i)
    series: list[str | None] = [None] * len(titles)
    for name, members in groups.items():
        if len(members) < 2:
            continue
        members = [m for m in members if _belongs(m, members, keys, released, genres)]
        distinct = {bases[m] for m in members}
        if len(distinct) >= 2 and any(keys[m].marker for m in members):
            for m in members:
                series[m] = name
    positions = fill_positions(series, np.full(len(titles), np.nan), released, titles)
    return series, positions


def _belongs(
    member: int,
    members: list[int],
    keys: list[_Key],
    released: np.ndarray,
    genres: Sequence[Sequence[str]] | None,
) -> bool:
    """Whether a marked title is a plausible sequel: sharing a genre with another member and,
    for a subtitled title in a group without numbered sequels, not older than every original
    ("Ali: Fear Eats the Soul" (1974) is no sequel of "Ali" (2001))."""
    if not keys[member].marker:
        return True
    if keys[member].subtitle and not any(keys[m].marker and not keys[m].subtitle for m in members):
        originals = released[[m for m in members if keys[m].plain]]
        originals = originals[~np.isnat(originals)]
        if len(originals) and released[member] < originals.min():
            return False
    if genres is None or not genres[member]:
        return True
    own = set(genres[member])
    others = [set(genres[m]) for m in members if m != member and genres[m]]
    return not others or any(own & other for other in others)


def fill_positions(
    series: Sequence[str | None],
    positions: np.ndarray,
    released: np.ndarray,
    titles: Sequence[str],
) -> np.ndarray:
    """Positions with the missing ones of series members filled in.

    Members without a position are numbered after the series' largest given position, in order
    of release date (unknown last), then title.
    """
    frame = pd.DataFrame(
        {
            "series": pd.Series(list(series), dtype=object),
            "position": np.asarray(positions, dtype=np.float64),
            "released": pd.Series(np.asarray(released, dtype="datetime64[s]")),
            "title": pd.Series(titles, dtype=object),
        }
    )
    in_series = frame["series"].notna()
    start = frame[in_series].groupby("series")["position"].max().fillna(0.0)
    todo = frame[in_series & frame["position"].isna()]
    todo = todo.sort_values(["series", "released", "title"], na_position="last", kind="stable")
    rank = todo.groupby("series").cumcount().to_numpy() + 1
    filled = frame["position"].to_numpy().copy()
    filled[todo.index.to_numpy()] = rank + todo["series"].map(start).to_numpy(dtype=np.float64)
    filled[~in_series.to_numpy()] = np.nan
    return filled
