"""Every way a collect request can fail: each class knows its HTTP status and reason code.

``retryable`` decides 503 (the tracker keeps its queue and retries with backoff) against a 4xx
(retrying the same bytes cannot help). The mapping to a response lives in one place,
:meth:`viz.collect.app.CollectApp.fail`; the class's ``code`` is also the label of the
``viz_collect_failures_total`` counter, so the set of codes below is closed.
"""

from __future__ import annotations

import json

from viz.common.errors import VizError


class CollectError(VizError):
    status = 500
    code = "internal"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code)
        self.message = message

    def body(self) -> bytes:
        return _BODIES[type(self)]


class BadHttp(CollectError):
    """The bytes on the connection are not HTTP/1.x we accept; the connection is closed."""

    status, code = 400, "bad_http"


class Malformed(CollectError):
    """A query string or body that cannot be read at all."""

    status, code = 400, "malformed"


class Invalid(CollectError):
    """A readable body with a value out of its allowed type, length or range."""

    status, code = 400, "invalid"

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path

    def body(self) -> bytes:
        return json.dumps({"error": {"code": self.code, "path": self.path,
                                     "message": self.message}}).encode()


class TokenExpired(CollectError):
    """Genuine but outdated token: the tracker refreshes via /init and resends the same events."""

    status, code = 401, "token_expired"


class TokenInvalid(CollectError):
    """Forged, for another bid/tid, or signed by a key the site no longer has."""

    status, code = 403, "token_invalid"


class OriginNotAllowed(CollectError):
    """``Origin`` (or Referer for /hit) is not one of the site's domains, or is ``null``."""

    status, code = 403, "origin_not_allowed"


class UnknownSite(CollectError):
    status, code = 404, "unknown_site"


class NotFound(CollectError):
    status, code = 404, "not_found"


class MethodNotAllowed(CollectError):
    status, code = 405, "method_not_allowed"


class BodyTooLarge(CollectError):
    """Content-Length (or the body read so far) is over the limit; the connection is closed."""

    status, code = 413, "too_large"


class HeadersTooLarge(CollectError):
    """The request line and headers exceed the protocol's limit; the connection is closed."""

    status, code = 431, "headers_too_large"


class RateLimited(CollectError):
    """The client address sent more than its share; answered with a computed Retry-After."""

    status, code = 429, "rate_limited"


class MessageTooLarge(CollectError):
    """The broker refuses an event as too large: retrying cannot help."""

    status, code = 413, "message_too_large"


class QueueFull(CollectError):
    """The producer's bounded local queue cannot take the request's events now."""

    status, code, retryable = 503, "queue_full", True


class DeliveryTimeout(CollectError):
    """Not every delivery report arrived within the delivery deadline."""

    status, code, retryable = 503, "delivery_timeout", True


class DeliveryFailed(CollectError):
    """The broker reported a (retryable) error for an event."""

    status, code, retryable = 503, "delivery_failed", True


class ConfigUnavailable(CollectError):
    """The site is not cached and viz-config cannot be asked right now."""

    status, code, retryable = 503, "config_unavailable", True


class ShuttingDown(CollectError):
    status, code, retryable = 503, "shutting_down", True


class Internal(CollectError):
    """A bug: logged with its traceback, answered 500."""


ALL_ERRORS: tuple[type[CollectError], ...] = (
    BadHttp, Malformed, Invalid, TokenExpired, TokenInvalid, OriginNotAllowed, UnknownSite,
    NotFound, MethodNotAllowed, BodyTooLarge, HeadersTooLarge, RateLimited, MessageTooLarge,
    QueueFull, DeliveryTimeout, DeliveryFailed, ConfigUnavailable, ShuttingDown, Internal,
)

_BODIES: dict[type[CollectError], bytes] = {
    cls: json.dumps({"error": {"code": cls.code}}).encode() for cls in ALL_ERRORS
}
