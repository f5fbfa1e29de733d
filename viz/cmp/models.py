"""What viz-cmp accepts and decides: request decoding, the GPC rule, the proof fields.

Every check raises an :class:`~viz.common.web.HttpError` naming the offending field, so the
tracker (or whoever integrates it) learns from one response what to fix. Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from viz._fast import token as tokens
from viz.common.consent_cookie import BANNER_VERSION_RE, BID_RE
from viz.common.sites import SID_RE, SiteRecord
from viz.common.web import (  # noqa: F401 - re-exported: the handlers use models.*
    HttpError,
    InvalidField,
    MalformedJson,
    NotFound,
    UnsupportedMediaType,
    read_json,
)

MAX_BODY_BYTES = 16 * 1024
TIERS = (0, 1, 2)
GPC_MAX_TIER = 1
"""``Sec-GPC: 1`` caps the tier here unless the visitor explicitly chose more in the banner."""
CLIENT_METHODS = ("banner", "api", "withdrawal")
"""How a request may say the choice was made; ``gpc`` is only ever set by the server."""
LEDGER_METHODS = ("banner", "withdrawal", "gpc", "api")
NO_ORIGIN_SOURCE = "api"
"""The ledger's ``source`` for a request without an Origin (not sent by a browser page)."""

_BODY_FIELDS = ("sid", "bid", "token", "tier", "banner_version", "method", "explicit")
_TOKEN_RE = re.compile(r"[0-9a-f]{64}")
_JSON_TYPES = ("application/json", "text/plain")  # text/plain: navigator.sendBeacon


class UnknownSite(NotFound):
    code = "unknown_site"

    def __init__(self, sid: str) -> None:
        super().__init__(f"no site with sid {sid!r}")


class CmpDisabled(HttpError):
    status = 403
    code = "cmp_disabled"

    def __init__(self, sid: str) -> None:
        super().__init__(f"site {sid!r} does not have the consent banner (features.cmp) enabled")


class OriginNotAllowed(HttpError):
    status = 403
    code = "origin_not_allowed"


class TokenRequired(HttpError):
    """A decision naming a browser id without collect's token for it: nothing proves the caller
    is that browser."""

    status = 400
    code = "token_required"

    def __init__(self) -> None:
        super().__init__("token: is required with a bid: send the token viz-collect's GET /init "
                         "returned with that bid", details={"field": "token"})


class TokenExpired(HttpError):
    """Genuine but outside its window pair; the same code and status as viz-collect's, so the
    tracker handles both alike: a fresh token from ``GET /init``, then the same request again."""

    status = 401
    code = "token_expired"

    def __init__(self) -> None:
        super().__init__("the token's window is over: get a fresh one from viz-collect's "
                         "GET /init and send the decision again")


class TokenInvalid(HttpError):
    """Forged, issued for another browser id or tenant, or signed by a key the site no longer
    has; refreshing will not help."""

    status = 403
    code = "token_invalid"

    def __init__(self) -> None:
        super().__init__("the token was not issued for this bid by this site")


# --- requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentRequest:
    """A visitor's choice as ``POST /cmp/consent`` sent it (validated, not yet decided)."""

    sid: str
    tier: int
    banner_version: str
    bid: str | None = None
    token: str | None = None
    """viz-collect's token for (bid, tenant); present exactly when ``bid`` is."""
    method: str = "banner"
    explicit: bool = False


@dataclass(frozen=True)
class StatusQuery:
    sid: str
    bid: str | None


async def read_body(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; ``text/plain`` is accepted so ``sendBeacon`` needs no preflight."""
    body = await read_json(request, _JSON_TYPES)
    if not isinstance(body, dict):
        raise InvalidField("$", "the request body must be a JSON object")
    return body


def parse_sid(value: Any, name: str = "sid") -> str:
    if value is None:
        raise InvalidField(name, "is required")
    if not isinstance(value, str) or not SID_RE.fullmatch(value):
        raise InvalidField(name, "must be 3 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")
    return value


def parse_bid(value: Any, name: str = "bid") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not BID_RE.fullmatch(value):
        raise InvalidField(name, "must be a browser id: 22 characters of A-Z, a-z, 0-9, '_' "
                                 "and '-' (omit it or send null before one is issued)")
    return value


def body_sid(body: Mapping[str, Any], query: Mapping[str, str]) -> str:
    """The sid of a consent body; a ``?sid=`` (used by preflights) must name the same site."""
    sid = parse_sid(body.get("sid"))
    if "sid" in query and query["sid"] != sid:
        raise InvalidField("sid", "the body and the ?sid= query parameter name different sites")
    return sid


def parse_consent(body: Mapping[str, Any]) -> ConsentRequest:
    for key in body:
        if key not in _BODY_FIELDS:
            raise InvalidField(key, f"unknown field; allowed: {', '.join(_BODY_FIELDS)}")
    tier = body.get("tier")
    if tier is None:
        raise InvalidField("tier", "is required (0 = declined, 1 = analytics, "
                                   "2 = personalisation)")
    if isinstance(tier, bool) or not isinstance(tier, int) or tier not in TIERS:
        raise InvalidField("tier", "must be the integer 0, 1 or 2")
    version = body.get("banner_version")
    if version is None:
        raise InvalidField("banner_version", "is required: the version of the banner the "
                                             "visitor answered")
    if not isinstance(version, str) or not BANNER_VERSION_RE.fullmatch(version):
        raise InvalidField("banner_version",
                           "must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'")
    method = body.get("method", "banner")
    if method not in CLIENT_METHODS:
        raise InvalidField("method", f"must be one of {', '.join(CLIENT_METHODS)} "
                                     "(gpc is recorded by the server from the Sec-GPC header)")
    explicit = body.get("explicit", False)
    if not isinstance(explicit, bool):
        raise InvalidField("explicit", "must be true or false")
    bid = parse_bid(body.get("bid"))
    return ConsentRequest(sid=parse_sid(body.get("sid")), tier=tier, banner_version=version,
                          bid=bid, token=parse_token(body.get("token"), bid), method=method,
                          explicit=explicit)


def parse_token(value: Any, bid: str | None) -> str | None:
    """The token, required with a bid and refused without one (``null`` is the same as absent).

    Only its form is checked here; :func:`verify_token` decides whether it is genuine.
    """
    if value is None:
        if bid is not None:
            raise TokenRequired()
        return None
    if bid is None:
        raise InvalidField("token", "only goes with a bid: it is viz-collect's proof for one "
                                    "browser id (omit both before /init issued them)")
    if not isinstance(value, str) or not _TOKEN_RE.fullmatch(value):
        raise InvalidField("token", "must be the 64 lowercase hex characters viz-collect's "
                                    "GET /init returned")
    return value


def verify_token(request: ConsentRequest, site: SiteRecord, now: float) -> None:
    """Raise unless the request's token is viz-collect's for (bid, tenant) at ``now``.

    The same check as collect's (:class:`viz._fast.token.TokenSigner`: current and previous
    window, the site's current key and a previous one still in its grace period, constant-time
    comparison). A request without a bid has nothing to verify.
    """
    if request.bid is None:
        return
    if request.token is None:
        raise TokenRequired()
    signer = tokens.TokenSigner(site.verification_keys(now))
    try:
        signer.verify(request.bid, site.tid, request.token, now)
    except tokens.TokenExpired:
        raise TokenExpired() from None
    except tokens.TokenInvalid:
        raise TokenInvalid() from None


def parse_status_query(query: Mapping[str, str]) -> StatusQuery:
    return StatusQuery(sid=parse_sid(query.get("sid")), bid=parse_bid(query.get("bid")))


def gpc_signal(headers: Mapping[str, str]) -> bool:
    """True for ``Sec-GPC: 1`` (the only value the Global Privacy Control spec defines)."""
    return headers.get("Sec-GPC", "").strip() == "1"


# --- origins --------------------------------------------------------------------------------


def origin_host(origin: str) -> str | None:
    """The lower-case host of an ``http(s)://host[:port]`` Origin, or ``None``.

    ``None`` for anything that is not exactly that: ``null``, other schemes, a path, query or
    fragment, userinfo (``https://site.example@evil.example``), IPv6 literals, non-ASCII.
    """
    if origin.startswith("https://"):
        authority = origin[8:]
    elif origin.startswith("http://"):
        authority = origin[7:]
    else:
        return None
    if (not authority or not authority.isascii()
            or any(c in authority for c in "/?#@\\[] \t")):
        return None
    host, _, port = authority.partition(":")
    if port and not port.isdigit():
        return None
    return host.lower().rstrip(".") or None


def allowed_origin(site: SiteRecord, origin: str | None) -> str | None:
    """The origin host when ``origin`` may read ``site``'s answers; ``None`` without an Origin.

    Raises :class:`OriginNotAllowed` for ``Origin: null`` and for origins whose host is not one
    of the site's domains (or a subdomain of one).
    """
    if origin is None:
        return None
    host = origin_host(origin)
    if host is None:
        raise OriginNotAllowed(f"Origin {origin[:100]!r} is never trusted")
    if not site.allows_origin_host(host):
        raise OriginNotAllowed(f"Origin {origin[:100]!r} is not one of the domains of site "
                               f"{site.sid!r}")
    return host


# --- decisions ------------------------------------------------------------------------------


def banner_hash(cmp_config: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the site's ``cmp_config`` as canonical JSON.

    The config script serves ``cmp_config`` whole to cmp.js, which builds the banner from it
    (texts, tiers offered, links), so the whole object is what the visitor was shown. Canonical
    JSON: keys sorted at every level, no whitespace (``","`` and ``":"``), non-ASCII characters
    as themselves, UTF-8. The same object always gives the same hash, any edit a new one.
    """
    canonical = json.dumps(cmp_config, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False, allow_nan=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Choice:
    """A decision ready to record, everything but what depends on the stored previous state."""

    consent_id: uuid.UUID
    at: datetime
    sid: str
    tid: str
    bid: str | None
    tier: int
    """The tier recorded: the one asked for, capped by GPC when that applies."""
    requested_tier: int
    explicit: bool
    gpc: bool
    banner_version: str
    banner_hash: str
    method: str
    """How the client says the choice was made (one of :data:`CLIENT_METHODS`)."""
    source: str

    @property
    def gpc_capped(self) -> bool:
        return self.tier < self.requested_tier


def choose(request: ConsentRequest, site: SiteRecord, *, gpc: bool, source: str,
           at: datetime, consent_id: uuid.UUID) -> Choice:
    """Apply the GPC rule: a ``Sec-GPC: 1`` request is capped at tier 1 unless ``explicit``."""
    tier = request.tier
    if gpc and tier > GPC_MAX_TIER and not request.explicit:
        tier = GPC_MAX_TIER
    return Choice(consent_id=consent_id, at=at, sid=site.sid, tid=site.tid, bid=request.bid,
                  tier=tier, requested_tier=request.tier, explicit=request.explicit, gpc=gpc,
                  banner_version=request.banner_version, banner_hash=banner_hash(site.cmp_config),
                  method=request.method, source=source)


def ledger_method(choice: Choice, previous_tier: int | None) -> str:
    """The ledger's ``method``: the server's reading wins over the client's label.

    ``gpc`` when the signal capped the tier; ``withdrawal`` when the tier goes below the
    recorded one (Art. 7(3)); otherwise what the client said (``banner``, ``api`` or an
    explicit ``withdrawal``).
    """
    if choice.gpc_capped:
        return "gpc"
    if previous_tier is not None and choice.tier < previous_tier:
        return "withdrawal"
    return choice.method


@dataclass(frozen=True)
class Recorded:
    """What the store knows once a choice is committed."""

    previous_tier: int | None
    method: str
    consented_at: datetime
    """When the current tier was given: kept when the same tier and banner are confirmed again."""


@dataclass(frozen=True)
class CurrentConsent:
    """A ``consent_records`` row: the current tier of one browser id in one tenant."""

    tier: int
    banner_version: str
    consented_at: datetime
