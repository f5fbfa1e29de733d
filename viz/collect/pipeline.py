"""What a request means: named small steps from raw request to envelopes, or to a Drop.

Each endpoint is two phases of steps around the one thing that may need I/O, the site lookup
(done by the app); a phase is itself a step (:func:`phase`), and /collect's two, which run on
every request, are each written as one function. A step is ``(ingest) -> Drop | None``: it
reads and fills the :class:`Ingest`, returns a :class:`Drop` for a deliberate drop (a value
with a reason from the closed set :data:`DROP_REASONS`, answered 204 + ``X-Viz-Dropped``), and
raises a :class:`~viz.collect.errors.CollectError` for a request that is wrong. Steps never
block and do no I/O.
"""

from __future__ import annotations

import base64
import math
import os
import re
import time
from collections.abc import Callable
from itertools import count

from viz import _fast
from viz.collect.errors import (
    BodyTooLarge,
    Invalid,
    Malformed,
    OriginNotAllowed,
    TokenExpired,
    TokenInvalid,
)
from viz.collect.request import Request, cookie_value, parse_query, url_host
from viz.common.clock import Clock, SystemClock
from viz.common.sites import SiteRecord

MAX_UA_CHARS = 512
"""A longer User-Agent is cut: enough to classify any real browser, bounded for the topic."""

_BID_RE = re.compile(rb"[A-Za-z0-9_-]{22}")
_SIGNER_CACHE_MAX = 4096
_UA_CACHE_MAX = 4096
_ORIGIN_CACHE_MAX = 4096


class Drop:
    """A deliberate drop; one shared instance per reason, so dropping allocates nothing."""

    __slots__ = ("reason", "header")

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.header = b"X-Viz-Dropped: " + reason.encode() + b"\r\n"

    def __repr__(self) -> str:
        return f"Drop({self.reason!r})"


BOT = Drop("bot")
"""The User-Agent is a crawler, a monitor, a headless browser, a script — or missing."""
NO_CONSENT = Drop("no_consent")
"""The tracker reported consent tier 0: no id, no events."""
COLLECT_DISABLED = Drop("collect_disabled")
"""The site has ``features.collect`` off."""
NO_ORIGIN = Drop("no_origin")
"""/hit without Origin or Referer: the pixel cannot be attributed to one of the site's pages."""

DROPS = (BOT, NO_CONSENT, COLLECT_DISABLED, NO_ORIGIN)
DROP_REASONS = tuple(d.reason for d in DROPS)


# A small, fast screen; the consumer classifies user agents fully (browser, os, device, bot).
_BOT_RE = re.compile(
    rb"bot\b|bot/|crawl|spider|slurp|scrape|headless|lighthouse|phantomjs|selenium|webdriver"
    rb"|puppeteer|playwright|facebookexternalhit|embedly|preview|pingdom|uptime|monitor"
    rb"|curl/|wget/|httpie|python-|aiohttp|httpx|go-http-client|java/|okhttp|libwww|"
    rb"apache-httpclient|axios/|node-fetch|undici|postman|insomnia|scrapy|ahrefs|semrush|"
    rb"yandex|baidu|bingpreview|mediapartners|adsbot|feedfetcher|validator|checker",
    re.IGNORECASE,
)


class Ingest:
    """The working state of one request while its steps run."""

    __slots__ = ("request", "deps", "now_s", "now_ms", "sid", "tier", "site", "cors", "payload",
                 "event", "bid", "set_cookie", "token", "exp", "values", "linker")

    linker: str | None
    """/init only: the raw ``lk`` query value, ``None`` once it no longer matters. Set by
    :func:`read_init_query` (not in ``__init__``, so /collect pays nothing for it)."""

    def __init__(self, request: Request, deps: PipelineDeps) -> None:
        self.request = request
        self.deps = deps
        self.now_s = now_s = deps.time()
        self.now_ms = int(now_s * 1000)
        self.sid = ""
        self.tier = 1
        # Set by the steps (or the app, for ``site``) before any later step reads them.
        self.site: SiteRecord = None  # type: ignore[assignment]
        self.cors = b""
        """CORS response headers; set once the Origin is known to be one of the site's."""
        self.payload: _fast.Payload = None  # type: ignore[assignment]
        self.event: _fast.Event = None  # type: ignore[assignment]
        self.bid: str = ""
        self.set_cookie = False
        self.token = ""
        self.exp = 0
        self.values: list[bytes] = []


Step = Callable[[Ingest], Drop | None]


class PipelineDeps:
    """What steps need besides the request: the clock, token signers, the bot screen's cache."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        # Read once per request; SystemClock.time is time.time behind a Python frame.
        self.time: Callable[[], float] = time.time if type(clock) is SystemClock else clock.time
        self._signers: dict[str, tuple[SiteRecord, float, float, object]] = {}
        """sid -> (record, from, until, signer): the signer of the keys live in [from, until)."""
        self._ua_is_bot: dict[bytes, bool] = {}
        self._ua_text: dict[bytes, str] = {}
        self._origins: dict[tuple[bytes, str], tuple[SiteRecord, bytes | None]] = {}
        self._hit_prefix = base64.urlsafe_b64encode(os.urandom(9)).decode()
        self._hit_counter = count()

    def signer(self, site: SiteRecord, now_s: float):  # -> viz._fast.TokenSigner
        """The site's token signer, rebuilt only when its record or its live key set changes.

        A record's key set changes once, when a rotated-out key's grace ends: before that
        moment it is (current, previous), from it on (current). The entry remembers the span
        its keys are live in, so a cache hit is two comparisons (the compiled lane reads the
        same entries) and a clock stepping back is answered right."""
        entry = self._signers.get(site.sid)
        if entry is not None and entry[0] is site and entry[1] <= now_s < entry[2]:
            return entry[3]
        signer = _fast.TokenSigner(site.verification_keys(now_s))
        ends = site.previous_key_expires_at
        if site.previous_key is None or ends is None:
            span = (-math.inf, math.inf)
        else:
            span = (-math.inf, ends) if now_s < ends else (ends, math.inf)
        if len(self._signers) >= _SIGNER_CACHE_MAX:
            self._signers.clear()
        self._signers[site.sid] = (site, *span, signer)
        return signer

    def cors_for(self, site: SiteRecord, origin: bytes) -> bytes | None:
        """The CORS headers granting ``origin`` if it is one of ``site``'s, else ``None``;
        remembered per (origin, site record), so a page's repeat requests cost a dict lookup."""
        key = (origin, site.sid)
        entry = self._origins.get(key)
        if entry is not None and entry[0] is site:
            return entry[1]
        cors = cors_headers(origin) if origin_allowed(site, origin) else None
        if len(self._origins) >= _ORIGIN_CACHE_MAX:
            self._origins.clear()
        self._origins[key] = (site, cors)
        return cors

    def is_bot(self, user_agent: bytes | None) -> bool:
        if not user_agent:
            return True
        verdict = self._ua_is_bot.get(user_agent)
        if verdict is None:
            verdict = _BOT_RE.search(user_agent) is not None
            if len(self._ua_is_bot) >= _UA_CACHE_MAX:
                self._ua_is_bot.clear()
            self._ua_is_bot[user_agent] = verdict
        return verdict

    def ua_text(self, user_agent: bytes | None) -> str:
        if not user_agent:
            return ""
        text = self._ua_text.get(user_agent)
        if text is None:
            text = user_agent.decode("utf-8", "replace")[:MAX_UA_CHARS]
            if len(self._ua_text) >= _UA_CACHE_MAX:
                self._ua_text.clear()
            self._ua_text[user_agent] = text
        return text

    def hit_id(self) -> str:
        """A process-unique event id for an anonymous hit (the tracker sends none)."""
        return f"{self._hit_prefix}{next(self._hit_counter):x}"


def phase(*steps: Step) -> Step:
    """``steps`` as one step: run in order, the first :class:`Drop` (or error) ends it."""
    if len(steps) == 1:
        return steps[0]

    def run(ingest: Ingest) -> Drop | None:
        for step in steps:
            drop = step(ingest)
            if drop is not None:
                return drop
        return None

    run.__qualname__ = run.__name__ = "+".join(step.__name__ for step in steps)
    return run


# -- CORS ---------------------------------------------------------------------------------------

_EXPOSE = b"Access-Control-Expose-Headers: Retry-After, X-Viz-Dropped\r\n"


def cors_headers(origin: bytes) -> bytes:
    """Headers that let the site's page (and only it) read a credentialed response."""
    return (b"Access-Control-Allow-Origin: " + origin
            + b"\r\nAccess-Control-Allow-Credentials: true\r\n" + _EXPOSE)


def origin_allowed(site: SiteRecord, origin: bytes) -> bool:
    """True for ``http(s)://host[:port]`` exactly, with host one of the site's domains."""
    if b"/" in origin[8:] or b"?" in origin or b"#" in origin:
        return False  # an Origin never carries a path; this one is not safe to echo
    host = url_host(origin)
    return host is not None and site.allows_origin_host(host)


# -- shared steps -------------------------------------------------------------------------------

def drop_bots(ingest: Ingest) -> Drop | None:
    return BOT if ingest.deps.is_bot(ingest.request.user_agent) else None


def drop_without_consent(ingest: Ingest) -> Drop | None:
    return NO_CONSENT if ingest.tier == 0 else None


def drop_if_collect_disabled(ingest: Ingest) -> Drop | None:
    features = ingest.site.features
    return None if features.get("collect", True) else COLLECT_DISABLED


def require_allowed_origin(ingest: Ingest) -> Drop | None:
    """A browser's Origin must be one of the site's; no Origin (not a CORS request) is fine.

    ``Origin: null`` (sandboxed frames, file: pages, some redirects) is never trusted.
    """
    origin = ingest.request.origin
    if origin is None:
        return None
    cors = ingest.deps.cors_for(ingest.site, origin)
    if cors is None:
        raise OriginNotAllowed()
    ingest.cors = cors
    return None


def _tier(query: dict[str, str], default: int | None) -> int:
    raw = query.get("tier")
    if raw is None:
        if default is None:
            raise Invalid("$.tier", "is required (0, 1 or 2: the visitor's consent tier)")
        return default
    if raw not in ("0", "1", "2"):
        raise Invalid("$.tier", "must be 0, 1 or 2")
    return int(raw)


def _query(request: Request) -> dict[str, str]:
    try:
        return parse_query(request.query)
    except ValueError:
        raise Malformed("query string is not readable") from None


# -- GET /init ----------------------------------------------------------------------------------

def read_init_query(ingest: Ingest) -> Drop | None:
    """``sid`` (required), ``tier`` (required: the banner choice), ``bid`` (optional: the
    tracker's localStorage copy, adopted when the cookie is missing), ``lk`` (optional: a
    cross-domain linker, adopted only once verified, see :func:`verify_linker`)."""
    query = _query(ingest.request)
    sid = query.get("sid")
    if not sid:
        raise Invalid("$.sid", "is required")
    ingest.sid = sid
    ingest.tier = _tier(query, None)
    ingest.bid = query.get("bid", "")
    ingest.linker = query.get("lk")
    return None


def read_bid_cookie(ingest: Ingest) -> Drop | None:
    """A valid ``viz_bid`` cookie is the BID, whatever the query offers (a linker is then not
    even verified). Otherwise the cookie is (re)set with whatever BID is chosen: its lifetime
    is counted from consent and is not silently extended on every visit."""
    cookie = cookie_value(ingest.request.cookie, b"viz_bid")
    if cookie is not None and _BID_RE.fullmatch(cookie):
        ingest.bid = cookie.decode("ascii")
        ingest.linker = None
        return None
    ingest.set_cookie = True
    return None


def choose_bid(ingest: Ingest) -> Drop | None:
    """Without the cookie: the verified linker's BID (put in ``bid`` by :func:`verify_linker`),
    else the tracker's stored copy when well-formed, else a new random one."""
    if not ingest.set_cookie:
        return None  # the cookie's
    if ingest.bid and _BID_RE.fullmatch(ingest.bid.encode("utf-8", "replace")):
        return None
    ingest.bid = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode("ascii")
    return None


def issue_token(ingest: Ingest) -> Drop | None:
    site = ingest.site
    signer = ingest.deps.signer(site, ingest.now_s)
    ingest.token = signer.issue(ingest.bid, site.tid, ingest.now_s)
    ingest.exp = signer.expires_at_s(ingest.now_s)
    return None


# -- the cross-domain linker (GET /init?lk=) ----------------------------------------------------

_LINKER_RE = re.compile(r"([A-Za-z0-9_-]{22})\.([0-9]{1,12})\.([0-9a-f]{64})\.([A-Za-z0-9_-]{3,64})")

LINKER_SKEW_S = 120
"""How far the linker's time may lie ahead of collect's clock, and beyond the token's lifetime
behind it. The time is the source page's clock at the click and is not signed: the check only
turns away values no genuine linker can carry; the token's own window is the real bound."""
LINKER_MAX_AGE_S = 2 * _fast.WINDOW_S
"""A token verifies for at most two windows after the one it was issued in started, and a
linker is written after its token was issued: an older linker cannot carry a live token."""

LINKER_REFUSALS = ("malformed", "timestamp", "unknown_site", "unavailable", "other_tenant",
                   "expired", "invalid")
"""Why a linker was not adopted (the label values of ``viz_collect_linker_refused_total``):
not ``<bid>.<ts>.<token>.<sid>``; its time outside [now - 600 - 120 s, now + 120 s]; no such
source site; the source site could not be looked up (viz-config unreachable and not cached);
the source site belongs to another tenant; its token is genuine but its window is over; its
token is not one the source site's keys issued for this BID and tenant."""


class Linker:
    """A parsed ``lk``: ``<bid>.<ts>.<token>.<sid>``, the ``_vz`` value the source page wrote."""

    __slots__ = ("bid", "ts", "token", "sid")

    def __init__(self, bid: str, ts: int, token: str, sid: str) -> None:
        self.bid = bid
        self.ts = ts
        self.token = token
        self.sid = sid


def parse_linker(ingest: Ingest) -> Linker | str:
    """The linker of the request, or the reason it is refused before any lookup
    (``malformed``, ``timestamp``)."""
    match = _LINKER_RE.fullmatch(ingest.linker or "")
    if match is None:
        return "malformed"
    ts = int(match[2])
    now_s = ingest.now_s
    if not now_s - LINKER_MAX_AGE_S - LINKER_SKEW_S <= ts <= now_s + LINKER_SKEW_S:
        return "timestamp"
    return Linker(match[1], ts, match[3], match[4])


def verify_linker(ingest: Ingest, linker: Linker, source: SiteRecord | None) -> str | None:
    """Adopt the linker's BID (into ``ingest.bid``) when ``source`` issued its token for this
    tenant; else return the reason and leave ``ingest.bid`` to the tracker's stored copy.

    The token is checked exactly as /collect checks one: the source site's current key and a
    previous key still in its grace period, the current and the previous window,
    constant-time. What a pass proves: collect issued this BID, for this tenant, to some
    browser within the last ten minutes. Not that the browser sending it is that browser: a
    linker is a bearer credential, as the decorated link that carried it is.
    """
    if source is None:
        return "unknown_site"
    tid = ingest.site.tid
    if source.tid != tid:
        return "other_tenant"
    now_s = ingest.now_s
    try:
        ingest.deps.signer(source, now_s).verify(linker.bid, tid, linker.token, now_s)
    except _fast.TokenExpired:
        return "expired"
    except _fast.TokenInvalid:
        return "invalid"
    except _fast.BadIdentifier:
        return "malformed"
    ingest.bid = linker.bid
    return None


# Deliberate drops come after the origin check, so their answer carries the CORS grant and the
# tracker can read `X-Viz-Dropped` (and stop retrying) instead of seeing a CORS failure.
# Between the two, the app verifies a linker (``ingest.linker`` still set): that may need the
# source site's record, so it may await the site directory.
INIT_BEFORE_SITE: Step = read_init_query
INIT_WITH_SITE: Step = phase(require_allowed_origin, drop_bots, drop_without_consent,
                             drop_if_collect_disabled, read_bid_cookie)
INIT_ISSUE: Step = phase(choose_bid, issue_token)


# -- POST /collect ------------------------------------------------------------------------------

def read_collect_request(ingest: Ingest) -> Drop | None:
    """The optional ``tier`` query field (1 or 2, default 1: holding a token means the visitor
    consented), then the body: parsed and checked, its ``sid`` is the site to look up."""
    request = ingest.request
    target = request.target
    q = target.find(b"?")
    if q >= 0 and q + 1 < len(target):
        ingest.tier = _tier(_query(request), 1)
    try:
        payload = _fast.parse_payload(request.body, ingest.now_ms)
    except _fast.PayloadTooLarge:
        raise BodyTooLarge() from None
    except _fast.PayloadError as exc:
        if exc.path == "$":
            raise Malformed(exc.message) from None
        raise Invalid(exc.path, exc.message) from None
    ingest.payload = payload
    ingest.sid = payload.sid
    return None


def check_and_encode_collect(ingest: Ingest) -> Drop | None:
    """/collect once the site is known, as one step (it runs on every request): the checks of
    :func:`require_allowed_origin`, :func:`drop_bots`, :func:`drop_without_consent` and
    :func:`drop_if_collect_disabled`, in that order, then the token, then the envelopes."""
    site = ingest.site
    request = ingest.request
    deps = ingest.deps
    origin = request.origin
    if origin is not None:
        entry = deps._origins.get((origin, site.sid))  # cors_for's cache hit, inlined
        cors = entry[1] if entry is not None and entry[0] is site else deps.cors_for(site, origin)
        if cors is None:
            raise OriginNotAllowed()
        ingest.cors = cors
    user_agent = request.user_agent
    if not user_agent:
        return BOT
    is_bot = deps._ua_is_bot.get(user_agent)  # is_bot's cache hit, inlined
    if is_bot is None:
        is_bot = deps.is_bot(user_agent)
    if is_bot:
        return BOT
    if ingest.tier == 0:
        return NO_CONSENT
    if not site.features.get("collect", True):
        return COLLECT_DISABLED
    payload = ingest.payload
    now_s = ingest.now_s
    try:
        deps.signer(site, now_s).verify(payload.bid, site.tid, payload.token, now_s)
    except _fast.TokenExpired:
        raise TokenExpired() from None
    except _fast.TokenInvalid:
        raise TokenInvalid() from None
    except _fast.BadIdentifier:
        raise Invalid("$.bid", "must be 22 base64url characters") from None
    ua = deps._ua_text.get(user_agent)  # ua_text's cache hit, inlined
    ingest.values = _fast.encode_envelopes(
        payload, tid=site.tid, ua=deps.ua_text(user_agent) if ua is None else ua,
        tier=ingest.tier, server_ms=ingest.now_ms)
    return None


COLLECT_BEFORE_SITE: Step = read_collect_request
COLLECT_WITH_SITE: Step = check_and_encode_collect


# -- GET /hit -----------------------------------------------------------------------------------

def read_hit_query(ingest: Ingest) -> Drop | None:
    query = _query(ingest.request)
    sid = query.get("sid")
    if not sid:
        raise Invalid("$.sid", "is required")
    ingest.sid = sid
    ingest.tier = 0
    try:
        ingest.event = _fast.hit_event(ingest.deps.hit_id(), query.get("p", ""), query.get("r"),
                                       ingest.now_ms)
    except _fast.PayloadError as exc:
        raise Invalid(exc.path, exc.message) from None
    return None


def require_hit_origin(ingest: Ingest) -> Drop | None:
    """The page must be one of the site's: by Origin when sent, else by Referer.

    An image request carries no Origin, only a Referer (often just the origin, by the default
    referrer policy). With neither, the hit cannot be attributed and is dropped.
    """
    request = ingest.request
    site = ingest.site
    if request.origin is not None:
        cors = ingest.deps.cors_for(site, request.origin)
        if cors is None:
            raise OriginNotAllowed()
        ingest.cors = cors
        return None
    host = url_host(request.referer)
    if host is None:
        if request.referer:
            raise OriginNotAllowed()
        return NO_ORIGIN
    if not site.allows_origin_host(host):
        raise OriginNotAllowed()
    return None


def encode_hit(ingest: Ingest) -> Drop | None:
    ingest.values = [_fast.encode_envelope(
        ingest.event, sid=ingest.sid, tid=ingest.site.tid, bid=None,
        ua=ingest.deps.ua_text(ingest.request.user_agent), tier=0, server_ms=ingest.now_ms)]
    return None


HIT_BEFORE_SITE: Step = read_hit_query
HIT_WITH_SITE: Step = phase(require_hit_origin, drop_bots, encode_hit)
