"""Per-request context: the engine, the HTTP exchange it came from, and the catalog it reads."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from app.access import HEADER, client_of
from app.engine import Engine, Loaded
from app.logs import new_request_id
from app.rate_limits import RateLimits


@dataclass
class Context:
    engine: Engine
    request: Request | None = None
    response: Response | None = None  # headers and status set here reach the client
    rate_limits: RateLimits | None = None  # None: nothing is rate-limited
    request_id: str = field(default_factory=new_request_id)  # the log's and `requestId`
    operation: str = "unparsed"  # its top-level fields, once it is parsed (metrics, logs)
    degraded: bool = False  # a recommendation of it was answered with a fallback
    gone: bool = False  # its client was found to have hung up (nothing is computed for it then)
    _loaded: Loaded | None = None

    @property
    def loaded(self) -> Loaded:
        """The catalog and model version this request reads: taken once, on first use, so every
        field of one request sees the same version even while a new one is swapped in."""
        if self._loaded is None:
            self._loaded = self.engine.current
        return self._loaded

    async def client_gone(self) -> bool:
        """Whether the HTTP client has hung up (asked without waiting: False while it is there).
        Once it has, `gone` stays set and the request is logged as 499."""
        if self.request is not None and not self.gone:
            self.gone = await self.request.is_disconnected()
        return self.gone

    @property
    def api_key(self) -> str | None:
        """The key the request presents in X-API-Key, if any."""
        return self.request.headers.get(HEADER) if self.request is not None else None

    @property
    def client(self) -> str:
        """Whom the request counts against for rate limits: its valid key, else its address."""
        address = self.request.client.host if self.request and self.request.client else None
        return client_of(self.engine.settings, self.api_key, address)
