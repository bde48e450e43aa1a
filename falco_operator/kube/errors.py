"""Errors the runtime tells apart: API answers by status code, and terminal reconcile errors."""

from __future__ import annotations

import math
from typing import Any


class TerminalError(Exception):
    """The spec itself is wrong: retrying cannot help, so the request is not requeued."""


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(
        self, status: int, message: str, reason: str = "", body: Any = None, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {message}" if reason else f"{status}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body
        self.retry_after = retry_after
        """Seconds the server asked the client to wait (its ``Retry-After`` header: 429s, some 503s), or None."""

    @classmethod
    def from_response(cls, status: int, body: Any, text: str, retry_after: str | None = None) -> ApiError:
        message = body.get("message", text) if isinstance(body, dict) else text
        reason = body.get("reason", "") if isinstance(body, dict) else ""
        error_type = _BY_STATUS.get(status, ApiError)
        return error_type(status, str(message)[:2000], str(reason), body, retry_after_seconds(retry_after))


def retry_after_seconds(header: str | None) -> float | None:
    """A ``Retry-After`` header in seconds; None when absent or not a number of seconds (the API server sends
    whole seconds; an HTTP date is not worth parsing for it)."""
    if header is None:
        return None
    try:
        seconds = float(header.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class NotFound(ApiError):
    pass


class Unreachable(ApiError):
    """No answer: connection refused or reset, time-out, TLS failure (status 0). Retried like any API error."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message, "Unreachable")


class Conflict(ApiError):
    pass


class Gone(ApiError):
    """The resourceVersion asked for is too old (410): relist."""


class Invalid(ApiError):
    """The object was rejected by validation (422)."""


class Forbidden(ApiError):
    pass


class Unauthorized(ApiError):
    pass


_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
}
