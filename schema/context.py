"""Per-request context: the engine, the request it came from, and the catalog it reads."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from app.engine import Engine, Loaded


@dataclass
class Context:
    engine: Engine
    request: Request | None = None
    _loaded: Loaded | None = None

    @property
    def loaded(self) -> Loaded:
        """The catalog and model version this request reads: taken once, on first use, so every
        field of one request sees the same version even while a new one is swapped in."""
        if self._loaded is None:
            self._loaded = self.engine.current
        return self._loaded
