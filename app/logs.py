"""Logs: one JSON object per line (or plain text), each carrying the request it belongs to.

`configure` sets up the `shortlist` loggers once per process, from SHORTLIST_LOG_FORMAT and
SHORTLIST_LOG_LEVEL. The request id lives in a context variable that the GraphQL endpoint sets
for each request (`request_scope`); it is the `requestId` the response carries, so a client's
complaint leads straight to the server's log lines. Records still propagate to the root logger,
so whatever the host application (or pytest) attaches there sees them too.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

LOGGER = "shortlist"
request_id: ContextVar[str | None] = ContextVar("shortlist_request_id", default=None)
# attributes every LogRecord has: anything else was passed in `extra=` and goes into the line
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = getattr(record, "request_id", None) or request_id.get()
        if current is not None:
            line["request_id"] = current
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        current = getattr(record, "request_id", None) or request_id.get()
        return f"{text} [request {current}]" if current else text


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so configuring twice replaces it instead of adding a second one."""


def configure(fmt: Literal["json", "text"] = "json", level: str = "INFO") -> None:
    logger = logging.getLogger(LOGGER)
    for handler in [h for h in logger.handlers if isinstance(h, _Handler)]:
        logger.removeHandler(handler)
    handler = _Handler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level.upper())


def new_request_id() -> str:
    return uuid.uuid4().hex


@contextmanager
def request_scope(rid: str) -> Iterator[str]:
    """Log lines written inside carry `rid`."""
    token = request_id.set(rid)
    try:
        yield rid
    finally:
        request_id.reset(token)
