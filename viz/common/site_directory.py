"""What every service knows about sites: an in-process cache in front of viz-config.

viz-config is the only owner of sites. Every other service (collect, cmp, recs, analytics)
learns about one through ``GET {VIZ_CONFIG_URL}/internal/sites/{sid}`` (service-authenticated,
see :mod:`viz.common.sites` for the body) and keeps the answer in a :class:`SiteDirectory`.

Behaviour of :meth:`SiteDirectory.get`, in the order it is checked:

* **Fresh hit** (younger than ``ttl_s``): the cached record is returned without awaiting
  anything: one dict lookup and one clock read. This is collect's per-request path.
* **Known unknown**: a sid viz-config answered 404 for is cached as "no such site" for
  ``negative_ttl_s`` and answered ``None`` without I/O. Negative entries live in their own,
  smaller table (``max_negative_entries``) so a flood of made-up sids can never evict the real
  sites a service needs during an outage. A sid that is not even syntactically valid is
  answered ``None`` without a lookup and without being cached.
* **Expired but usable** (expired less than ``max_stale_s`` ago): *stale-while-revalidate*.
  The stale record is returned at once and one background task refreshes it. If that refresh
  fails, the stale record stays and the next attempt waits for a backoff (``refresh_backoff_s``,
  doubling per consecutive failure up to ``ttl_s``) instead of firing on every request. So a
  viz-config or PostgreSQL outage never blocks a request for a site the service already knows,
  for up to ``max_stale_s``. The cost: the first request after expiry sees the previous
  version of the record (at most ``ttl_s + max_stale_s`` old for a rarely visited site); call
  :meth:`SiteDirectory.invalidate` where that matters.
* **Miss** (never seen, evicted, invalidated, negative entry expired, or too stale): the caller
  awaits a lookup. Lookups are single-flight: concurrent callers for one sid share one task,
  and a caller that is cancelled does not cancel the lookup for the others. If the lookup fails
  and no usable stale record exists, the caller gets :class:`UnavailableError` (retryable: a
  service answers 503).

The cache is bounded: over ``max_entries`` the entry stored longest ago is dropped. Entries are
re-stored on every refresh, so this is least-recently-*refreshed*, which tracks use closely
because only sites that are asked for get refreshed. The counters (``hits``, ``misses``,
``stale_served``, ``negative_hits``, ``fetch_errors``, ``evictions``) are plain ints for a
service to export as Prometheus metrics.

Everything runs on one event loop; no method is thread-safe.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Protocol

import aiohttp

from viz.common.clock import Clock, SystemClock
from viz.common.errors import UnavailableError
from viz.common.settings import ConfigClientSettings
from viz.common.sites import SiteRecord, is_valid_sid

log = logging.getLogger(__name__)

_TASK_PREFIX = "viz-site-lookup:"
_MUST_AWAIT = object()
_ERROR_LOG_INTERVAL_S = 10.0
"""Lookup failures are logged at WARNING at most this often: an outage is one incident."""


class SiteFetcher(Protocol):
    """Looks one site up at its source of truth."""

    async def fetch(self, sid: str) -> SiteRecord | None:
        """Return the site, or ``None`` when the source says it definitely does not exist.

        Called by :class:`SiteDirectory` only, at most once at a time per sid, inside a task of
        its own that may be cancelled (on :meth:`SiteDirectory.close`). Awaits network I/O and
        must finish in bounded time. Raises :class:`UnavailableError` when the answer is not
        known (source unreachable, timed out, refused, or answered garbage); any other
        exception is treated the same way but logged as a bug.
        """
        ...


class HttpSiteFetcher:
    """:class:`SiteFetcher` over viz-config's internal endpoint.

    ``200`` with a decodable body for the same sid is the record, ``404`` with error code
    ``unknown_site`` is ``None``; any
    other status (401/403 included: a wrong service token must not look like "no such site"),
    a connection error, a timeout (``settings.timeout_s`` for the whole request) or a malformed
    ``200`` body raises :class:`UnavailableError`. The service token is sent as
    ``Authorization: Bearer …`` and never appears in a log line or an error message. Redirects
    are not followed, so the token is only ever sent to ``settings.url``.

    The session is borrowed: the owner creates it before and closes it after the fetcher.
    """

    def __init__(self, settings: ConfigClientSettings, session: aiohttp.ClientSession) -> None:
        self._base_url = settings.url.rstrip("/") + "/internal/sites/"
        self._token = settings.service_token
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_s)

    async def fetch(self, sid: str) -> SiteRecord | None:
        # A valid sid is URL-safe, so it goes into the path as is; anything else cannot exist
        # and must not be spliced into a URL that carries the service token.
        if not is_valid_sid(sid):
            return None
        headers = {"Authorization": "Bearer " + self._token.reveal()}
        try:
            async with self._session.get(self._base_url + sid, headers=headers,
                                         timeout=self._timeout, allow_redirects=False) as resp:
                if resp.status == 404 and await _says_unknown_site(resp):
                    return None
                if resp.status != 200:
                    raise UnavailableError(f"viz-config answered {resp.status} for site {sid}")
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Only the exception type: its text could carry request details.
            raise UnavailableError(
                f"viz-config unreachable for site {sid}: {type(exc).__name__}"
            ) from None
        try:
            record = SiteRecord.from_wire(json.loads(body))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UnavailableError(
                f"viz-config sent a malformed record for site {sid}: {type(exc).__name__}"
            ) from None
        if record.sid != sid:
            raise UnavailableError(f"viz-config sent site {record.sid!r} when asked for {sid!r}")
        return record


async def _says_unknown_site(resp: aiohttp.ClientResponse) -> bool:
    """Only viz-config's own "no such site" answer counts: a 404 from a wrong URL or a build
    without the route must not make every site look unknown."""
    try:
        body = await resp.json(content_type=None)
        return bool(body["error"]["code"] == "unknown_site")
    except (ValueError, KeyError, TypeError, aiohttp.ClientError):
        return False


class _Entry:
    """A known site and the monotonic times that govern it."""

    __slots__ = ("record", "expires_at", "stale_until", "retry_at", "failures")

    def __init__(self, record: SiteRecord, expires_at: float, stale_until: float) -> None:
        self.record = record
        self.expires_at = expires_at
        self.stale_until = stale_until
        self.retry_at = 0.0  # no background refresh before this (set after a failed one)
        self.failures = 0


class SiteDirectory:
    """The cache described in the module docstring; one per process, shared by all handlers.

    Create it at startup (inside the event loop that will use it) and :meth:`close` it at
    shutdown, before closing the fetcher's session. Durations are seconds of ``clock``'s
    monotonic time.
    """

    def __init__(self, fetcher: SiteFetcher, *, clock: Clock, ttl_s: float = 300.0,
                 max_stale_s: float = 86_400.0, negative_ttl_s: float = 30.0,
                 max_entries: int = 100_000, max_negative_entries: int | None = None,
                 refresh_backoff_s: float = 5.0) -> None:
        if ttl_s <= 0 or max_stale_s < 0 or negative_ttl_s < 0 or refresh_backoff_s <= 0:
            raise ValueError("ttl_s and refresh_backoff_s must be > 0, the others >= 0")
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        if max_negative_entries is None:
            max_negative_entries = max(1, max_entries // 10)
        self._fetcher = fetcher
        # Read on every lookup; SystemClock.monotonic is time.monotonic behind a Python frame.
        self._monotonic: Callable[[], float] = (
            time.monotonic if type(clock) is SystemClock else clock.monotonic)
        self._ttl_s = ttl_s
        self._max_stale_s = max_stale_s
        self._negative_ttl_s = negative_ttl_s
        self._max_entries = max_entries
        self._max_negative = max_negative_entries
        self._backoff_s = refresh_backoff_s
        self._max_backoff_s = max(ttl_s, refresh_backoff_s)
        # Insertion order is storage order: the first key is the one to evict.
        self._entries: dict[str, _Entry] = {}
        self._negative: dict[str, float] = {}  # sid -> monotonic expiry of "no such site"
        self._inflight: dict[str, asyncio.Task[SiteRecord | None]] = {}
        self._tasks: set[asyncio.Task[SiteRecord | None]] = set()
        self._closed = False
        self._last_error_log = float("-inf")
        self.hits = 0
        """Fresh records returned from the cache."""
        self.misses = 0
        """``get`` calls that had to await a lookup (joining one in flight included)."""
        self.stale_served = 0
        """Expired records returned: while refreshing in the background, or on lookup failure."""
        self.negative_hits = 0
        """``None`` answered without a lookup: cached "no such site", or an invalid sid."""
        self.fetch_errors = 0
        """Failed lookups (one per lookup, however many callers shared it)."""
        self.evictions = 0
        """Entries dropped to stay within ``max_entries`` / ``max_negative_entries``."""

    @classmethod
    def from_settings(cls, settings: ConfigClientSettings, session: aiohttp.ClientSession,
                      clock: Clock) -> SiteDirectory:
        """A directory over viz-config's internal endpoint with the TTLs from ``settings``."""
        return cls(HttpSiteFetcher(settings, session), clock=clock,
                   ttl_s=settings.cache_ttl_s, max_stale_s=settings.max_stale_s,
                   negative_ttl_s=settings.negative_ttl_s)

    def __len__(self) -> int:
        """Entries held, known sites and cached unknown sids together."""
        return len(self._entries) + len(self._negative)

    async def get(self, sid: str) -> SiteRecord | None:
        """The site ``sid``, or ``None`` when it does not exist.

        Called per request. A fresh or usable stale entry returns without awaiting I/O (a stale
        one also starts a background refresh); otherwise awaits one shared lookup, bounded by
        the fetcher's timeout. Raises :class:`UnavailableError` when the lookup fails and no
        usable stale record exists, or when a lookup is needed after :meth:`close`.
        """
        record = self.get_nowait(sid, _MUST_AWAIT)
        if record is not _MUST_AWAIT:
            return record  # type: ignore[return-value]
        return await self._get_slow(sid)

    def get_nowait(self, sid: str, default: object = None) -> SiteRecord | None | object:
        """What :meth:`get` answers without awaiting, or ``default`` when it would await.

        The synchronous part of :meth:`get`, with the same effects (counters, the background
        refresh of a stale entry): a fresh or usable stale record, or ``None`` for a cached
        "no such site". A caller that gets ``default`` awaits :meth:`get` for the answer (a sid
        that is not even valid is answered there, without a lookup). Never raises.
        """
        now = self._monotonic()
        entry = self._entries.get(sid)
        if entry is not None:
            if now < entry.expires_at:
                self.hits += 1
                return entry.record
            if now < entry.stale_until:
                self.stale_served += 1
                if now >= entry.retry_at and sid not in self._inflight and not self._closed:
                    self._start_lookup(sid)
                return entry.record
        else:
            negative_until = self._negative.get(sid)
            if negative_until is not None and now < negative_until:
                self.negative_hits += 1
                return None
        return default

    def peek(self, sid: str) -> SiteRecord | None:
        """The cached record if ``get`` could serve it (fresh or usable stale), else ``None``.

        Synchronous and cheap; never does I/O, never starts a refresh, never raises, counts
        nothing. ``None`` does not distinguish "unknown" from "not cached".
        """
        entry = self._entries.get(sid)
        if entry is not None and self._monotonic() < entry.stale_until:
            return entry.record
        return None

    def invalidate(self, sid: str) -> None:
        """Forget ``sid`` so the next ``get`` looks it up again; never blocks or raises.

        A lookup already in flight is not cancelled (its callers still get its answer) but its
        result is not stored, since it may predate the change that prompted the invalidation.
        """
        self._entries.pop(sid, None)
        self._negative.pop(sid, None)
        self._inflight.pop(sid, None)

    async def close(self) -> None:
        """Cancel every lookup in flight and wait for them to end; idempotent, never raises.

        Callers waiting on a cancelled lookup get :class:`UnavailableError`. Afterwards cached
        entries are still served, but anything needing a lookup raises ``UnavailableError``.
        """
        self._closed = True
        self._inflight.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _get_slow(self, sid: str) -> SiteRecord | None:
        if not is_valid_sid(sid):
            self.negative_hits += 1
            return None
        self.misses += 1
        task = self._inflight.get(sid)
        if task is None:
            if self._closed:
                raise UnavailableError("the site directory is closed")
            task = self._start_lookup(sid)
        try:
            # shield: a caller's cancellation must not cancel the lookup others share.
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and (current is None or not current.cancelling()):
                raise UnavailableError("the site directory is closed") from None
            raise
        except UnavailableError:
            entry = self._entries.get(sid)
            if entry is not None and self._monotonic() < entry.stale_until:
                self.stale_served += 1
                return entry.record
            raise

    def _start_lookup(self, sid: str) -> asyncio.Task[SiteRecord | None]:
        task = asyncio.create_task(self._lookup(sid), name=_TASK_PREFIX + sid)
        self._inflight[sid] = task
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._lookup_done(sid, t))
        return task

    def _lookup_done(self, sid: str, task: asyncio.Task[SiteRecord | None]) -> None:
        self._tasks.discard(task)
        if self._inflight.get(sid) is task:
            del self._inflight[sid]
        if not task.cancelled():
            task.exception()  # retrieved: a background failure is handled, not "never retrieved"

    async def _lookup(self, sid: str) -> SiteRecord | None:
        task = asyncio.current_task()
        try:
            record = await self._fetcher.fetch(sid)
        except UnavailableError as exc:
            self._lookup_failed(sid, task, exc)
            raise
        except Exception as exc:  # CancelledError is a BaseException and passes through
            log.exception("site lookup for %s raised unexpectedly", sid)
            error = UnavailableError(f"site lookup for {sid} failed: {type(exc).__name__}")
            self._lookup_failed(sid, task, error)
            raise error from None
        if self._inflight.get(sid) is task:  # not invalidated meanwhile
            self._store(sid, record)
        return record

    def _lookup_failed(self, sid: str, task: asyncio.Task[SiteRecord | None] | None,
                       exc: UnavailableError) -> None:
        self.fetch_errors += 1
        now = self._monotonic()
        entry = self._entries.get(sid) if self._inflight.get(sid) is task else None
        if entry is not None:
            entry.failures += 1
            backoff = self._backoff_s * 2 ** min(entry.failures - 1, 30)
            entry.retry_at = now + min(backoff, self._max_backoff_s)
        if now - self._last_error_log >= _ERROR_LOG_INTERVAL_S:
            self._last_error_log = now
            log.warning("site lookup failed (%s); %d lookup failures so far, known sites are "
                        "served from cache for up to %.0f s past expiry",
                        exc, self.fetch_errors, self._max_stale_s)

    def _store(self, sid: str, record: SiteRecord | None) -> None:
        now = self._monotonic()
        if record is None:
            self._entries.pop(sid, None)
            self._negative.pop(sid, None)
            if self._negative_ttl_s > 0:
                self._negative[sid] = now + self._negative_ttl_s
                self._evict(self._negative, self._max_negative)
            return
        self._negative.pop(sid, None)
        self._entries.pop(sid, None)  # re-insert at the end: stored most recently
        expires_at = now + self._ttl_s
        self._entries[sid] = _Entry(record, expires_at, expires_at + self._max_stale_s)
        self._evict(self._entries, self._max_entries)

    def _evict(self, table: dict[str, _Entry] | dict[str, float], limit: int) -> None:
        while len(table) > limit:
            del table[next(iter(table))]
            self.evictions += 1
