"""Per-request context: the engine and the request it came from."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from app.engine import Engine


@dataclass
class Context:
    engine: Engine
    request: Request | None = None
