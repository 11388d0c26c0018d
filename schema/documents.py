"""GraphQL documents that parsed and passed validation, remembered by their text.

A client sends the same few query texts over and over, with new variables each time (the
recommendations query differs only in `$userId`). Parsing and validating such a document is
about half of what the GraphQL layer costs per request, and the answer never changes for one
schema and one set of limits: so a document that passed is kept (parsed) under its text and the
limits it passed, and the next request with that text skips both steps.

Only documents that passed are kept: a refused one is parsed and validated again, each time, so
its errors are always its own. The memory is bounded: at most `size` documents (least recently
used go first), none longer than `max_chars` characters. graphql-core never changes a parsed
document, so one can be shared by concurrent requests.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from graphql import DocumentNode

SIZE = 256
MAX_CHARS = 20_000


class Documents:
    def __init__(self, size: int = SIZE, max_chars: int = MAX_CHARS) -> None:
        self.size = size
        self.max_chars = max_chars
        self._valid: OrderedDict[tuple[str, Hashable], DocumentNode] = OrderedDict()

    def valid(self, text: str, checks: Hashable) -> DocumentNode | None:
        """The document of `text` if it already passed `checks` (the limits it was held to)."""
        key = (text, checks)
        document = self._valid.get(key)
        if document is not None:
            self._valid.move_to_end(key)
        return document

    def passed(self, text: str, checks: Hashable, document: DocumentNode) -> None:
        """Remember that `document`, parsed from `text`, passed `checks` and validation."""
        if len(text) > self.max_chars:
            return
        self._valid[(text, checks)] = document
        self._valid.move_to_end((text, checks))
        while len(self._valid) > self.size:
            self._valid.popitem(last=False)

    def __len__(self) -> int:
        return len(self._valid)
