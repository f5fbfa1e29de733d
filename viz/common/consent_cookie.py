"""The signed consent cookie ``viz_consent``: issued by viz-cmp, verifiable by any service.

Value: ``{tier}.{banner_version}.{issued_at}.{signature}`` where ``issued_at`` is epoch seconds
and ``signature`` is unpadded base64url of HMAC-SHA256 under the cmp cookie secret over::

    "viz-consent-v1\\n" + tid + "\\n" + (bid or "") + "\\n" + tier + "\\n" + banner_version
    + "\\n" + issued_at

The cookie is readable by page scripts (cmp.js reads the tier and banner version) but it is
bound to the tenant and, when one existed at the decision, to the browser id: a script can
neither raise the tier nor move the cookie to another tenant or browser id without the secret.
Pure functions, no I/O; it lives in ``common`` so collect and recs can verify it too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

COOKIE_NAME = "viz_consent"
BANNER_VERSION_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""Banner versions travel inside the cookie value, so only cookie-safe characters."""
BID_RE = re.compile(r"[A-Za-z0-9_-]{22}")
"""A browser id: 128 random bits in unpadded base64url."""

_DOMAIN = b"viz-consent-v1\n"
_MAX_VALUE_CHARS = 200
_SIGNATURE_CHARS = 43  # 32 bytes, unpadded base64url
_ISSUED_RE = re.compile(r"[0-9]{1,12}")
_CLOCK_SKEW_S = 300
"""A cookie issued this far "in the future" is still accepted (servers' clocks differ)."""


@dataclass(frozen=True)
class ConsentClaim:
    """What a valid cookie says: the tier the visitor chose, under which banner, since when."""

    tier: int
    banner_version: str
    issued_at: int


def _signature(key: bytes, tid: str, bid: str | None, tier: int, banner_version: str,
               issued_at: int) -> str:
    message = "\n".join((tid, bid or "", str(tier), banner_version, str(issued_at)))
    digest = hmac.new(key, _DOMAIN + message.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign_consent_cookie(key: bytes, *, tier: int, banner_version: str, tid: str,
                        bid: str | None, issued_at: int) -> str:
    """The cookie value for a decision; raises ``ValueError`` on values it could not carry."""
    if tier not in (0, 1, 2):
        raise ValueError("tier must be 0, 1 or 2")
    if not BANNER_VERSION_RE.fullmatch(banner_version):
        raise ValueError("banner_version must be 1-64 characters of A-Z a-z 0-9 . _ -")
    if bid is not None and not BID_RE.fullmatch(bid):
        raise ValueError("bid must be 22 base64url characters")
    if not tid or "\n" in tid or not tid.isascii() or issued_at < 0:
        raise ValueError("tid must be ASCII without newlines and issued_at >= 0")
    signature = _signature(key, tid, bid, tier, banner_version, issued_at)
    return f"{tier}.{banner_version}.{issued_at}.{signature}"


def read_consent_cookie(value: str | None, tid: str, bid: str | None, now: float, *,
                        keys: Sequence[bytes], max_age_s: float) -> ConsentClaim | None:
    """The claim of a cookie signed by one of ``keys`` for exactly ``(tid, bid)``, or ``None``.

    ``None`` for anything else: malformed, another tenant or browser id (a cookie issued
    without a bid verifies only with ``bid=None``), a changed tier or version, issued more than
    ``max_age_s`` ago or too far in the future. Signatures are compared in constant time.
    """
    if not value or len(value) > _MAX_VALUE_CHARS or not value.isascii():
        return None
    tier_text, _, rest = value.partition(".")
    parts = rest.rsplit(".", 2)
    if tier_text not in ("0", "1", "2") or len(parts) != 3:
        return None
    banner_version, issued_text, signature = parts
    if (not BANNER_VERSION_RE.fullmatch(banner_version) or not _ISSUED_RE.fullmatch(issued_text)
            or len(signature) != _SIGNATURE_CHARS):
        return None
    issued_at = int(issued_text)
    if issued_at > now + _CLOCK_SKEW_S or now - issued_at > max_age_s:
        return None
    if (bid is not None and not BID_RE.fullmatch(bid)) or not tid.isascii() or "\n" in tid:
        return None
    tier = int(tier_text)
    presented = signature.encode("ascii")
    valid = False
    for key in keys:  # every key is tried, so the time taken does not tell which one matched
        expected = _signature(key, tid, bid, tier, banner_version, issued_at).encode("ascii")
        valid |= hmac.compare_digest(expected, presented)
    return ConsentClaim(tier, banner_version, issued_at) if valid else None


def verify_consent_cookie(value: str | None, tid: str, bid: str | None, now: float, *,
                          keys: Sequence[bytes], max_age_s: float) -> int | None:
    """The tier a valid cookie grants ``(tid, bid)`` at ``now``, or ``None``."""
    claim = read_consent_cookie(value, tid, bid, now, keys=keys, max_age_s=max_age_s)
    return claim.tier if claim is not None else None
