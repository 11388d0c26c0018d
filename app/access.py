"""Who may call the mutations: the X-API-Key header against the configured keys.

recordEvents takes the API key or the admin key; upsertItems and reloadModels only the admin key.
With no key configured the mutations are off (refused with FORBIDDEN), never open to anyone.
Keys are compared in constant time.
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
