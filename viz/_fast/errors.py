"""Exception classes shared by the compiled and pure-Python twins of viz._fast.

Both twins raise these very classes, so callers and tests never care which one is loaded.
"""

from __future__ import annotations

from viz.common.errors import VizError


class TokenError(VizError, ValueError):
    """A request token or the identifiers it signs cannot be accepted."""


class BadIdentifier(TokenError):
    """`bid` or `tid` is not of the expected charset/length (checked before any HMAC)."""


class TokenInvalid(TokenError):
    """Malformed, forged, signed by an unknown key, or too old to be worth a refresh hint."""


class TokenExpired(TokenError):
    """Genuine but outside the accepted window pair: the tracker must refresh via /init."""


class PayloadError(VizError, ValueError):
    """A `POST /collect` body is malformed; `path` points at the offending value (`$.events[2].p`)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}")

    def __reduce__(self):  # keep pickling (multiprocessing, logging handlers) working
        return (type(self), (self.path, self.message))


class PayloadTooLarge(PayloadError):
    """The body exceeds MAX_BODY_BYTES (HTTP 413)."""


class EnvelopeError(VizError, ValueError):
    """A Kafka message is not a decodable envelope (the consumer dead-letters it)."""


class UnknownVersion(EnvelopeError):
    """A well-formed envelope with a version (`v`) this consumer does not understand."""

    def __init__(self, version: int) -> None:
        self.version = version
        super().__init__(f"unknown envelope version {version!r}")

    def __reduce__(self):
        return (type(self), (self.version,))
