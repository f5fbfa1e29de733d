"""SiteDirectory caching rules against a fake fetcher, and HttpSiteFetcher against a real server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from viz.common.clock import ManualClock
from viz.common.errors import UnavailableError
from viz.common.settings import ConfigClientSettings, Secret
from viz.common.site_directory import HttpSiteFetcher, SiteDirectory
from viz.common.sites import SiteRecord

TTL = 300.0
MAX_STALE = 3600.0
NEGATIVE_TTL = 30.0
BACKOFF = 5.0


def make_record(sid: str = "site-1", version: int = 1) -> SiteRecord:
    return SiteRecord(
        sid=sid, tid="tenant-1", name=f"Site {sid}", domains=("example.org",),
        features={"collect": True, "cmp": True, "recs": False},
        cmp_config={"banner": "hello"}, recs_config={}, version=version,
        secret_key=bytes(range(32)),
    )


class FakeFetcher:
    """Answers from ``records``; ``fail`` makes it raise; ``gate`` holds every fetch open."""

    def __init__(self) -> None:
        self.records: dict[str, SiteRecord] = {}
        self.calls: list[str] = []
        self.fail: BaseException | None = None
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()

    def hold(self) -> asyncio.Event:
        """Hold every following fetch open until the returned event is set."""
        self.gate = asyncio.Event()
        self.started.clear()
        return self.gate

    async def fetch(self, sid: str) -> SiteRecord | None:
        self.calls.append(sid)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return self.records.get(sid)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fetcher() -> FakeFetcher:
    return FakeFetcher()


@pytest.fixture
async def directory(fetcher: FakeFetcher, clock: ManualClock) -> AsyncIterator[SiteDirectory]:
    d = SiteDirectory(fetcher, clock=clock, ttl_s=TTL, max_stale_s=MAX_STALE,
                      negative_ttl_s=NEGATIVE_TTL, refresh_backoff_s=BACKOFF)
    yield d
    await d.close()


async def lookups_finished(sid: str) -> None:
    """Wait for the directory's lookup tasks for ``sid`` (they are named after it) to end."""
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == f"viz-site-lookup:{sid}"]
    await asyncio.gather(*tasks, return_exceptions=True)


# --- hits, misses, expiry ------------------------------------------------------------------


async def test_fresh_hit_is_served_from_cache_without_a_lookup(
        directory: SiteDirectory, fetcher: FakeFetcher, clock: ManualClock) -> None:
    fetcher.records["site-1"] = make_record()
    assert await directory.get("site-1") == make_record()
    clock.advance(TTL - 1)
    assert await directory.get("site-1") == make_record()
    assert fetcher.calls == ["site-1"]
    assert (directory.misses, directory.hits) == (1, 1)


def finish_without_suspending(coro: Coroutine[Any, Any, object]) -> object:
    """Run ``coro`` one step; it must complete at once, i.e. never wait for anything."""
    with pytest.raises(StopIteration) as stop:
        coro.send(None)
    return stop.value.value


async def test_cached_answers_never_suspend_the_caller(
        directory: SiteDirectory, fetcher: FakeFetcher, clock: ManualClock) -> None:
    fetcher.records["site-1"] = make_record()
    await directory.get("site-1")
    await directory.get("nope")
    assert finish_without_suspending(directory.get("site-1")) == make_record()
    assert finish_without_suspending(directory.get("nope")) is None
    clock.advance(TTL)
    assert finish_without_suspending(directory.get("site-1")) == make_record()  # stale
    await lookups_finished("site-1")
    assert (directory.hits, directory.negative_hits, directory.stale_served) == (1, 1, 1)


async def test_expiry_triggers_a_background_refresh_and_serves_stale_meanwhile(
        directory: SiteDirectory, fetcher: FakeFetcher, clock: ManualClock) -> None:
    fetcher.records["site-1"] = make_record(version=1)
    await directory.get("site-1")
    fetcher.records["site-1"] = make_record(version=2)
    gate = fetcher.hold()
    clock.advance(TTL)

    stale = await directory.get("site-1")  # returns at once; the refresh is held open
    assert stale is not None and stale.version == 1
    await fetcher.started.wait()
    assert (await directory.get("site-1")).version == 1  # type: ignore[union-attr]
    assert directory.stale_served == 2
    assert fetcher.calls == ["site-1", "site-1"]  # single-flight: one refresh for both

    gate.set()
    await lookups_finished("site-1")
    assert (await directory.get("site-1")).version == 2  # type: ignore[union-attr]
    assert directory.hits == 1
    assert fetcher.calls == ["site-1", "site-1"]


async def test_expiry_refetches_in_the_foreground_when_stale_serving_is_off(
        fetcher: FakeFetcher, clock: ManualClock) -> None:
    directory = SiteDirectory(fetcher, clock=clock, ttl_s=TTL, max_stale_s=0)
    fetcher.records["site-1"] = make_record(version=1)
    await directory.get("site-1")
    fetcher.records["site-1"] = make_record(version=2)
    clock.advance(TTL)
    assert (await directory.get("site-1")).version == 2  # type: ignore[union-attr]
    assert fetcher.calls == ["site-1", "site-1"]
    await directory.close()


async def test_a_site_deleted_upstream_becomes_unknown_after_its_refresh(
        directory: SiteDirectory, fetcher: FakeFetcher, clock: ManualClock) -> None:
    fetcher.records["site-1"] = make_record()
    await directory.get("site-1")
    del fetcher.records["site-1"]
    clock.advance(TTL)
    assert await directory.get("site-1") is not None  # stale while the refresh runs
    await lookups_finished("site-1")
    assert await directory.get("site-1") is None
    assert directory.negative_hits == 1


# --- failures: serve stale, then give up ----------------------------------------------------


async def test_stale_record_is_served_on_lookup_failure_within_max_stale(
        directory: SiteDirectory, fetcher: FakeFetcher, clock: ManualClock) -> None:
    fetcher.records["site-1"] = make_record()
    await directory.get("site-1")
    fetcher.fail = UnavailableError("config down")
    clock.advance(TTL + MAX_STALE - 1)

    assert await directory.get("site-1") == make_record()
    await lookups_finished("site-1")
    assert directory.fetch_errors == 1
    assert directory.peek("site-1") == make_record()  # the failed refresh kept the entry


async def test_raises_unavailable_once_the_record_is_older_than_max_stale(
        directory: SiteDirectory, fetcher: FakeFetcher, clock: ManualClock) -> None:
    fetcher.records["site-1"] = make_record()
    await directory.get("site-1")
    fetcher.fail = UnavailableError("config down")
    clock.advance(TTL + MAX_STALE)

    with pytest.raises(UnavailableError):
        await directory.get("site-1")
    assert directory.peek("site-1") is None
    fetcher.fail = None
    assert await directory.get("site-1") == make_record()  # recovers with the source


async def test_failed_background_refresh_backs_off_instead_of_retrying_per_request(
        directory: SiteDirectory, fetcher: FakeFetcher, clock: ManualClock) -> None:
    fetcher.records["site-1"] = make_record(version=1)
    await directory.get("site-1")
    fetcher.fail = UnavailableError("config down")
    clock.advance(TTL)
    await directory.get("site-1")
    await lookups_finished("site-1")
    assert len(fetcher.calls) == 2

    for _ in range(50):
        assert await directory.get("site-1") is not None
    clock.advance(BACKOFF - 0.1)
    await directory.get("site-1")
    assert len(fetcher.calls) == 2  # still backing off

    clock.advance(0.1)
    await directory.get("site-1")
    await lookups_finished("site-1")
    assert len(fetcher.calls) == 3
    clock.advance(BACKOFF)  # the second failure doubled the backoff
    await directory.get("site-1")
    assert len(fetcher.calls) == 3

    fetcher.fail = None
    fetcher.records["site-1"] = make_record(version=2)
    clock.advance(BACKOFF)
    await directory.get("site-1")
    await lookups_finished("site-1")
    assert len(fetcher.calls) == 4
    assert (await directory.get("site-1")).version == 2  # type: ignore[union-attr]
    assert directory.fetch_errors == 2


async def test_a_fetcher_bug_counts_as_unavailable_and_is_logged(
        directory: SiteDirectory, fetcher: FakeFetcher,
        caplog: pytest.LogCaptureFixture) -> None:
    fetcher.fail = RuntimeError("bug")
    with pytest.raises(UnavailableError):
        await directory.get("site-1")
    assert "raised unexpectedly" in caplog.text
    assert directory.fetch_errors == 1


# --- negative caching -----------------------------------------------------------------------


async def test_unknown_site_is_cached_as_none_until_the_negative_ttl_expires(
        directory: SiteDirectory, fetcher: FakeFetcher, clock: ManualClock) -> None:
    assert await directory.get("nope") is None
    clock.advance(NEGATIVE_TTL - 1)
    assert await directory.get("nope") is None
    assert fetcher.calls == ["nope"]
    assert directory.negative_hits == 1

    fetcher.records["nope"] = make_record("nope")
    clock.advance(1)
    assert await directory.get("nope") == make_record("nope")
    assert fetcher.calls == ["nope", "nope"]


async def test_invalid_sid_is_answered_none_without_lookup_or_caching(
        directory: SiteDirectory, fetcher: FakeFetcher) -> None:
    for sid in ("", "ab", "../admin", "a/b/c", "x" * 65):
        assert await directory.get(sid) is None
    assert fetcher.calls == []
    assert len(directory) == 0


# --- single flight and cancellation ---------------------------------------------------------


async def test_concurrent_misses_share_one_lookup(
        directory: SiteDirectory, fetcher: FakeFetcher) -> None:
    fetcher.records["site-1"] = make_record()
    gate = fetcher.hold()
    callers = [asyncio.create_task(directory.get("site-1")) for _ in range(100)]
    await fetcher.started.wait()
    gate.set()
    results = await asyncio.gather(*callers)
    assert results == [make_record()] * 100
    assert fetcher.calls == ["site-1"]
    assert directory.misses == 100


async def test_concurrent_callers_share_one_failure(
        directory: SiteDirectory, fetcher: FakeFetcher) -> None:
    fetcher.fail = UnavailableError("config down")
    gate = fetcher.hold()
    callers = [asyncio.create_task(directory.get("site-1")) for _ in range(10)]
    await fetcher.started.wait()
    gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, UnavailableError) for r in results)
    assert fetcher.calls == ["site-1"]
    assert directory.fetch_errors == 1


async def test_a_cancelled_caller_does_not_cancel_the_lookup_for_the_others(
        directory: SiteDirectory, fetcher: FakeFetcher) -> None:
    fetcher.records["site-1"] = make_record()
    gate = fetcher.hold()
    first, second, third = (asyncio.create_task(directory.get("site-1")) for _ in range(3))
    await fetcher.started.wait()

    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    gate.set()
    assert await first == make_record()
    assert await third == make_record()
    assert fetcher.calls == ["site-1"]


async def test_lookup_completes_and_is_cached_even_if_every_caller_gave_up(
        directory: SiteDirectory, fetcher: FakeFetcher) -> None:
    fetcher.records["site-1"] = make_record()
    gate = fetcher.hold()
    caller = asyncio.create_task(directory.get("site-1"))
    await fetcher.started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller

    gate.set()
    await lookups_finished("site-1")
    assert directory.peek("site-1") == make_record()


# --- invalidate, close, bounds, peek --------------------------------------------------------


async def test_invalidate_forces_a_new_lookup(
        directory: SiteDirectory, fetcher: FakeFetcher) -> None:
    fetcher.records["site-1"] = make_record(version=1)
    await directory.get("site-1")
    fetcher.records["site-1"] = make_record(version=2)
    directory.invalidate("site-1")
    assert directory.peek("site-1") is None
    assert (await directory.get("site-1")).version == 2  # type: ignore[union-attr]


async def test_a_lookup_in_flight_during_invalidate_is_not_stored(
        directory: SiteDirectory, fetcher: FakeFetcher) -> None:
    fetcher.records["site-1"] = make_record(version=1)
    gate = fetcher.hold()
    caller = asyncio.create_task(directory.get("site-1"))
    await fetcher.started.wait()
    directory.invalidate("site-1")
    gate.set()
    assert (await caller).version == 1  # type: ignore[union-attr]
    assert directory.peek("site-1") is None  # may predate the change: not kept


async def test_close_cancels_lookups_and_later_misses_raise(
        directory: SiteDirectory, fetcher: FakeFetcher, clock: ManualClock) -> None:
    fetcher.records["known"] = make_record("known")
    await directory.get("known")
    fetcher.hold()  # never released: only close() ends the lookups
    waiting = asyncio.create_task(directory.get("site-1"))
    await fetcher.started.wait()
    fetcher.started.clear()
    clock.advance(TTL)
    await directory.get("known")  # starts a background refresh, also held open
    await fetcher.started.wait()
    assert fetcher.calls == ["known", "site-1", "known"]

    await directory.close()
    with pytest.raises(UnavailableError):
        await waiting
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("viz-site-lookup:")]
    assert await directory.get("known") == make_record("known")  # cache still serves
    with pytest.raises(UnavailableError):
        await directory.get("other")
    assert len(fetcher.calls) == 3


async def test_cache_is_bounded_and_evicts_the_oldest_entry(
        fetcher: FakeFetcher, clock: ManualClock) -> None:
    directory = SiteDirectory(fetcher, clock=clock, max_entries=3, max_negative_entries=2)
    for sid in ("site-1", "site-2", "site-3", "site-4"):
        fetcher.records[sid] = make_record(sid)
        await directory.get(sid)
        clock.advance(1)
    assert directory.peek("site-1") is None
    assert [directory.peek(s) is not None for s in ("site-2", "site-3", "site-4")] == [True] * 3

    # A flood of unknown sids fills its own table and never pushes out a known site.
    for n in range(10):
        assert await directory.get(f"bogus-{n}") is None
    assert len(directory) == 3 + 2
    assert [directory.peek(s) is not None for s in ("site-2", "site-3", "site-4")] == [True] * 3
    assert directory.evictions == 1 + 8
    await directory.close()


async def test_peek_never_looks_up_and_ignores_records_past_max_stale(
        directory: SiteDirectory, fetcher: FakeFetcher, clock: ManualClock) -> None:
    fetcher.records["site-1"] = make_record()
    assert directory.peek("site-1") is None
    assert fetcher.calls == []
    await directory.get("site-1")
    clock.advance(TTL + MAX_STALE - 1)
    assert directory.peek("site-1") == make_record()
    clock.advance(1)
    assert directory.peek("site-1") is None
    assert fetcher.calls == ["site-1"]


def test_rejects_nonsensical_limits(fetcher: FakeFetcher, clock: ManualClock) -> None:
    with pytest.raises(ValueError):
        SiteDirectory(fetcher, clock=clock, ttl_s=0)
    with pytest.raises(ValueError):
        SiteDirectory(fetcher, clock=clock, max_entries=0)


# --- HttpSiteFetcher against a real aiohttp server ------------------------------------------

TOKEN = "service-token-0123456789abcdef"  # noqa: S105 - a test fixture, not a credential
WRONG_TOKEN = "wrong-token-0123456789"  # noqa: S105


@dataclass
class ConfigStub:
    """A tiny viz-config serving the internal endpoint contract."""

    url: str
    auth_headers: list[str] = field(default_factory=list)


def _stub_app(seen: list[str], release: asyncio.Event) -> web.Application:
    async def internal_site(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": {"code": "unauthorized"}}, status=401)
        sid = request.match_info["sid"]
        if sid == "known":
            return web.json_response(make_record("known").to_wire())
        if sid == "broken":
            return web.json_response({"error": {"code": "internal"}}, status=500)
        if sid == "slow":
            await release.wait()  # set only at teardown, long after the client gave up
            return web.json_response(make_record("slow").to_wire())
        if sid == "garbage":
            return web.Response(text="<html>not json</html>", content_type="text/html")
        if sid == "incomplete":
            return web.json_response({"sid": "incomplete", "tid": "t"})
        if sid == "mixed-up":
            return web.json_response(make_record("known").to_wire())
        if sid == "wrong-route":
            return web.json_response({"error": {"code": "not_found"}}, status=404)
        return web.json_response({"error": {"code": "unknown_site"}}, status=404)

    app = web.Application()
    app.router.add_get("/internal/sites/{sid}", internal_site)
    return app


@pytest.fixture
async def config_stub() -> AsyncIterator[ConfigStub]:
    seen: list[str] = []
    release = asyncio.Event()
    runner = web.AppRunner(_stub_app(seen, release))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield ConfigStub(url=f"http://{host}:{port}", auth_headers=seen)
    release.set()
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def client_settings(url: str, *, token: str = TOKEN, timeout_s: float = 10.0) -> ConfigClientSettings:
    return ConfigClientSettings(url=url, service_token=Secret(token), cache_ttl_s=TTL,
                                max_stale_s=MAX_STALE, negative_ttl_s=NEGATIVE_TTL,
                                timeout_s=timeout_s)


async def test_http_fetcher_decodes_a_known_site_and_sends_the_token_as_bearer(
        config_stub: ConfigStub, session: aiohttp.ClientSession) -> None:
    fetcher = HttpSiteFetcher(client_settings(config_stub.url + "/"), session)
    assert await fetcher.fetch("known") == make_record("known")
    assert config_stub.auth_headers == [f"Bearer {TOKEN}"]


async def test_http_fetcher_maps_404_to_unknown(
        config_stub: ConfigStub, session: aiohttp.ClientSession) -> None:
    fetcher = HttpSiteFetcher(client_settings(config_stub.url), session)
    assert await fetcher.fetch("unknown") is None


@pytest.mark.parametrize("sid", ["broken", "garbage", "incomplete", "mixed-up", "wrong-route"])
async def test_http_fetcher_treats_errors_and_malformed_bodies_as_unavailable(
        sid: str, config_stub: ConfigStub, session: aiohttp.ClientSession,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fetcher = HttpSiteFetcher(client_settings(config_stub.url), session)
    with pytest.raises(UnavailableError) as err:
        await fetcher.fetch(sid)
    assert TOKEN not in str(err.value)
    assert TOKEN not in caplog.text


async def test_http_fetcher_with_a_wrong_token_is_unavailable_not_unknown(
        config_stub: ConfigStub, session: aiohttp.ClientSession) -> None:
    fetcher = HttpSiteFetcher(client_settings(config_stub.url, token=WRONG_TOKEN),
                              session)
    with pytest.raises(UnavailableError, match="401"):
        await fetcher.fetch("known")
    assert config_stub.auth_headers == [f"Bearer {WRONG_TOKEN}"]


async def test_http_fetcher_gives_up_after_its_timeout(
        config_stub: ConfigStub, session: aiohttp.ClientSession) -> None:
    fetcher = HttpSiteFetcher(client_settings(config_stub.url, timeout_s=0.2), session)
    with pytest.raises(UnavailableError, match="unreachable"):
        await fetcher.fetch("slow")


async def test_http_fetcher_is_unavailable_when_nothing_listens(
        session: aiohttp.ClientSession) -> None:
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    await runner.cleanup()  # the port is now closed
    fetcher = HttpSiteFetcher(client_settings(f"http://{host}:{port}"), session)
    with pytest.raises(UnavailableError, match="unreachable"):
        await fetcher.fetch("known")


async def test_http_fetcher_never_sends_an_invalid_sid(
        config_stub: ConfigStub, session: aiohttp.ClientSession) -> None:
    fetcher = HttpSiteFetcher(client_settings(config_stub.url), session)
    assert await fetcher.fetch("../../admin/sites") is None
    assert config_stub.auth_headers == []


async def test_directory_from_settings_serves_sites_from_the_config_service(
        config_stub: ConfigStub, session: aiohttp.ClientSession, clock: ManualClock) -> None:
    directory = SiteDirectory.from_settings(client_settings(config_stub.url), session, clock)
    assert await directory.get("known") == make_record("known")
    assert await directory.get("unknown") is None
    with pytest.raises(UnavailableError):
        await directory.get("broken")
    assert await directory.get("known") == make_record("known")
    assert (directory.hits, directory.misses, directory.fetch_errors) == (1, 3, 1)
    await directory.close()
