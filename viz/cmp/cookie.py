"""The ``viz_consent`` cookie as viz-cmp issues and reads it, over :mod:`viz.common.consent_cookie`.

Attributes: ``Path=/; Secure; SameSite=None; Max-Age=<VIZ_CMP_COOKIE_MAX_AGE_S>`` and no
``HttpOnly``, so cmp.js can read the tier and banner version; the signature (bound to the
tenant and the browser id) is what keeps a page script from raising the tier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from viz.common.consent_cookie import (
    COOKIE_NAME,
    ConsentClaim,
    read_consent_cookie,
    sign_consent_cookie,
    verify_consent_cookie,
)

__all__ = ["COOKIE_NAME", "ConsentCookies", "verify_consent_cookie"]


@dataclass(frozen=True)
class ConsentCookies:
    """Signs with the first key, accepts any of ``keys`` (secret rotation)."""

    keys: Sequence[bytes]
    max_age_s: int

    def sign(self, *, tier: int, banner_version: str, tid: str, bid: str | None,
             issued_at: int) -> str:
        return sign_consent_cookie(self.keys[0], tier=tier, banner_version=banner_version,
                                   tid=tid, bid=bid, issued_at=issued_at)

    def set(self, response: web.StreamResponse, value: str) -> None:
        response.set_cookie(COOKIE_NAME, value, max_age=self.max_age_s, path="/", secure=True,
                            httponly=False, samesite="None")

    def read(self, value: str | None, tid: str, bid: str | None, now: float
             ) -> ConsentClaim | None:
        return read_consent_cookie(value, tid, bid, now, keys=self.keys,
                                   max_age_s=self.max_age_s)

    def verify(self, value: str | None, tid: str, bid: str | None, now: float) -> int | None:
        """The tier a valid cookie grants ``(tid, bid)`` at ``now``, or ``None``."""
        return verify_consent_cookie(value, tid, bid, now, keys=self.keys,
                                     max_age_s=self.max_age_s)
