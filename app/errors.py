"""The one error hierarchy. Every expected failure is a ShortlistError with a stable code."""

from __future__ import annotations


class ShortlistError(Exception):
    """An expected failure with a machine-readable code (reaches GraphQL as `extensions.code`)."""

    code = "SHORTLIST_ERROR"
    details: dict[str, str | float] = {}  # noqa: RUF012 - more `extensions`, never mutated


class InputError(ShortlistError):
    """Bad input data: names the file, the 1-based data row (header excluded) and the column."""

    code = "BAD_INPUT"

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.row = row
        self.column = column
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(str(self.file))
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class CatalogError(ShortlistError):
    """The catalog (LanceDB directory, manifest, model files) is missing or unreadable."""

    code = "CATALOG_UNAVAILABLE"


class ConfigError(ShortlistError):
    """A setting is invalid."""

    code = "BAD_CONFIG"


class BadRequest(ShortlistError):
    """A request argument is out of range or malformed."""

    code = "BAD_REQUEST"


class NotFound(ShortlistError):
    """An id that names nothing in the catalog."""

    code = "NOT_FOUND"


class Unauthenticated(ShortlistError):
    """No API key, or a key that is not one of the configured ones."""

    code = "UNAUTHENTICATED"


class Forbidden(ShortlistError):
    """A valid key that may not do this, or an operation no key is configured for."""

    code = "FORBIDDEN"


class ReloadFailed(ShortlistError):
    """A new version could not be loaded; the one serving before goes on serving."""

    code = "RELOAD_FAILED"

    def __init__(self, message: str, serving: str) -> None:
        super().__init__(message)
        self.details = {"modelVersion": serving}


class RateLimited(ShortlistError):
    """A client spent its budget of queries or events; `retry_after_s` says when to try again."""

    code = "RATE_LIMITED"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.details = {"retryAfter": round(retry_after_s, 3)}


class RequestTooLarge(ShortlistError):
    """A request body larger than SHORTLIST_MAX_BODY_BYTES."""

    code = "REQUEST_TOO_LARGE"


class ClientGone(ShortlistError):
    """The client hung up while its request waited for its turn: nothing was computed for it."""

    code = "CLIENT_GONE"
