"""Who may call what: the X-API-Key header against the configured keys.

recordEvents takes the API key or the admin key; upsertItems and reloadModels only the admin key.
With no key configured the mutations are off (refused with FORBIDDEN), never open to anyone.
Queries are open unless SHORTLIST_QUERIES_NEED_KEY is on; then they take either key.
Keys are compared in constant time. Rate limits count per client: the key it presents when
that key is valid, else its address (a made-up key buys no fresh budget).
"""

from __future__ import annotations

import hmac

from pydantic import SecretStr

from app.errors import Forbidden, Unauthenticated
from app.settings import Settings

HEADER = "x-api-key"


def authorize(settings: Settings, presented: str | None, *, admin: bool) -> None:
    """Raise unless `presented` is a key allowed to call an (admin) mutation."""
    if admin:
        allowed = [settings.admin_key]
        missing = "admin mutations are disabled: set SHORTLIST_ADMIN_KEY on the server"
    else:
        allowed = [settings.api_key, settings.admin_key]
        missing = "mutations are disabled: set SHORTLIST_API_KEY on the server"
    keys = [k for k in allowed if k is not None]
    if not keys:
        raise Forbidden(missing)
    if not presented:
        raise Unauthenticated("this mutation needs an API key in the X-API-Key header")
    if any(_matches(presented, k) for k in keys):
        return
    if admin and settings.api_key is not None and _matches(presented, settings.api_key):
        raise Forbidden("this mutation needs the admin key")
    raise Unauthenticated("the X-API-Key header holds no valid key")


def _matches(presented: str, key: SecretStr) -> bool:
    return hmac.compare_digest(presented.encode(), key.get_secret_value().encode())


def authorize_query(settings: Settings, presented: str | None) -> None:
    """Raise unless queries are open or `presented` is one of the configured keys."""
    if not settings.queries_need_key:
        return
    keys = [k for k in (settings.api_key, settings.admin_key) if k is not None]
    if not presented:
        raise Unauthenticated("queries need an API key in the X-API-Key header")
    if not any(_matches(presented, k) for k in keys):
        raise Unauthenticated("the X-API-Key header holds no valid key")


def client_of(settings: Settings, presented: str | None, address: str | None) -> str:
    """Whom a request counts against: `key:admin` or `key:api` for a valid key, else its address."""
    if presented:
        for name, key in (("admin", settings.admin_key), ("api", settings.api_key)):
            if key is not None and _matches(presented, key):
                return f"key:{name}"
    return f"address:{address or 'unknown'}"
