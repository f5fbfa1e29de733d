"""The compiled ``POST /collect`` lane answers exactly as the Python path, its pure twin, does.

Every scenario runs twice, on an app with the lane and on one without, from the same state and
the same clock, and must give the same bytes on the wire, the same messages in the sink and the
same metrics. The lane must also be the one that answered what it is meant to answer: a lane
that handed everything back would pass the comparison and be useless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from viz._fast._select import NO_EXTENSIONS
from viz.collect.errors import QueueFull
from viz.collect.settings import CollectSettings
from viz.collect.sinks import MemorySink
from viz.common.sites import SiteRecord

from .support import ORIGIN, UA, Harness, get, make_settings, make_site, post

pytestmark = [pytest.mark.skipif(NO_EXTENSIONS, reason="VIZ_NO_EXTENSIONS=1: no lane to compare"),
              pytest.mark.usefixtures("connection_twin")]

OTHER_BID = "BBBBBBBBBBBBBBBBBBBBBB"


def _harness(lane: bool, settings: CollectSettings | None,
             make_sink: Callable[[], MemorySink] | None, site: SiteRecord | None) -> Harness:
    return Harness(site or make_site(), make_site("site-off", collect=False),
                   make_site("site-cold"), lane=lane, settings=settings,
                   sink=make_sink() if make_sink else None)


@dataclass
class Outcome:
    wire: bytes
    messages: list[tuple[bytes, bytes]]
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    answered: int
    handed_back: int


def _metrics(h: Harness) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the registry but those that read a clock: the delivery time's sum and
    finite buckets (only its count is compared) and the counters' creation times."""
    out = {}
    for family in h.metrics.registry.collect():
        for sample in family.samples:
            if sample.name.endswith(("_created", "_seconds_sum")) or (
                    sample.name.endswith("_bucket") and sample.labels.get("le") != "+Inf"):
                continue
            if sample.name.startswith("viz_collect_lane_"):
                continue  # only an app with the lane has them; checked in _outcome
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


Script = Callable[[Harness], Awaitable[bytes]]


async def _outcome(script: Script, lane: bool, settings: CollectSettings | None,
                   make_sink: Callable[[], MemorySink] | None, site: SiteRecord | None) -> Outcome:
    h = _harness(lane, settings, make_sink, site)
    await h.warm()
    await h.warm("site-off")
    wire = await script(h)
    counters = h.app.lane
    assert (counters is not None) is lane
    if counters is not None:  # what /metrics tells an operator about the lane
        assert h.sample("viz_collect_lane_requests_total", path="lane") == counters.answered
        assert h.sample("viz_collect_lane_requests_total",
                        path="handed_back") == counters.handed_back
    return Outcome(wire, list(h.sink.messages), _metrics(h),
                   counters.answered if counters else 0, counters.handed_back if counters else 0)


async def _both(script: Script, *, settings: CollectSettings | None = None,
                make_sink: Callable[[], MemorySink] | None = None,
                site: SiteRecord | None = None) -> Outcome:
    """The lane's outcome, after checking that it equals the Python path's."""
    with_lane = await _outcome(script, True, settings, make_sink, site)
    without = await _outcome(script, False, settings, make_sink, site)
    assert with_lane.wire == without.wire
    assert with_lane.messages == without.messages
    assert with_lane.metrics == without.metrics
    return with_lane


async def _send(h: Harness, *raws: bytes) -> bytes:
    """Each request on its own turn of one connection; every answer awaited."""
    conn = h.connect()
    for raw in raws:
        await conn.request(raw)
    return bytes(conn.transport.buffer)


def _collect(h: Harness, *, events: int = 1, origin: bytes | None = ORIGIN,
             ua: bytes | None = UA, target: str = "/collect", **body: object) -> bytes:
    return post(target, h.body(events, **body), origin=origin, ua=ua)  # type: ignore[arg-type]


# -- what the lane answers itself ---------------------------------------------------------------

async def test_a_warm_request_is_answered_by_the_lane_with_the_python_paths_bytes() -> None:
    async def script(h: Harness) -> bytes:
        # The first request fills the origin and user-agent caches (the Python path does).
        return await _send(h, _collect(h), _collect(h), _collect(h, events=10),
                           _collect(h, bid=OTHER_BID))

    out = await _both(script)
    assert (out.answered, out.handed_back) == (3, 1)
    assert len(out.messages) == 13
    assert out.wire.count(b"HTTP/1.1 204 No Content\r\n") == 4
    assert out.wire.count(b"Access-Control-Allow-Origin: " + ORIGIN) == 4


async def test_a_request_without_origin_is_answered_by_the_lane_without_cors() -> None:
    async def script(h: Harness) -> bytes:
        return await _send(h, _collect(h, origin=None), _collect(h, origin=None))

    out = await _both(script)
    assert (out.answered, out.handed_back) == (1, 1)
    assert b"Access-Control-Allow-Origin" not in out.wire


async def test_pipelined_requests_are_answered_in_order_with_and_without_the_lane() -> None:
    async def script(h: Harness) -> bytes:
        await _send(h, _collect(h))  # warm the caches
        conn = h.connect()
        raws = [_collect(h), _collect(h, bid="A" * 21, token="0" * 64), get("/healthz"), _collect(h, events=3),
                _collect(h, token="0" * 64), _collect(h)]
        conn.send(b"".join(raws))
        await conn.wait_responses(len(raws))
        return bytes(conn.transport.buffer)

    out = await _both(script)
    assert out.answered == 3


# -- what it hands back -------------------------------------------------------------------------

HANDED_BACK: dict[str, Callable[[Harness], bytes]] = {
    "bot user agent": lambda h: _collect(h, ua=b"Googlebot/2.1 (+http://www.google.com/bot.html)"),
    "no user agent": lambda h: _collect(h, ua=None),
    "origin of another site": lambda h: _collect(h, origin=b"https://evil.example"),
    "origin null": lambda h: _collect(h, origin=b"null"),
    "tier 0 in the query": lambda h: _collect(h, target="/collect?tier=0"),
    "tier 2 in the query": lambda h: _collect(h, target="/collect?tier=2"),
    "collect turned off": lambda h: _collect(h, sid="site-off"),
    "unknown site": lambda h: _collect(h, sid="site-nope"),
    "site not cached yet": lambda h: _collect(h, sid="site-cold"),
    "expired token": lambda h: _collect(h, token=h.token(at=h.clock.time() - 3600)),
    "forged token": lambda h: _collect(h, token="ab" * 32),
    "token of another bid": lambda h: _collect(h, token=h.token(OTHER_BID)),
    "malformed bid": lambda h: _collect(h, bid="not a bid", token="0" * 64),
    "not json": lambda h: post("/collect", b"{nope"),
    "too many events": lambda h: _collect(h, events=51),
    "wrong method": lambda h: get("/collect"),
    "preflight": lambda h: (b"OPTIONS /collect?sid=site-one HTTP/1.1\r\nOrigin: " + ORIGIN
                            + b"\r\nContent-Length: 0\r\n\r\n"),
}


@pytest.mark.parametrize("case", sorted(HANDED_BACK))
async def test_every_other_request_gets_the_python_paths_answer(case: str) -> None:
    async def script(h: Harness) -> bytes:
        warm = await _send(h, _collect(h))  # warm the caches, so the lane would take a request
        return warm + await _send(h, HANDED_BACK[case](h), _collect(h))

    out = await _both(script)
    assert out.answered == 1  # the last request, after the case: the lane still answers


async def test_queue_full_and_failed_deliveries_are_answered_alike() -> None:
    async def full(h: Harness) -> bytes:
        await _send(h, _collect(h))
        h.sink.raise_on_send = QueueFull
        return await _send(h, _collect(h))

    out = await _both(full)
    assert out.answered == 1 and b"HTTP/1.1 503" in out.wire and b"Retry-After: 1" in out.wire

    async def failed(h: Harness) -> bytes:
        h.sink.acknowledge = True
        await _send(h, _collect(h))
        h.sink.acknowledge = False
        conn = h.connect()
        conn.send(_collect(h) + _collect(h, events=2))
        await conn.wait_for(lambda: h.sink.pending == 2)
        h.sink.fail_pending(QueueFull)
        await conn.wait_responses(2)
        return bytes(conn.transport.buffer)

    out = await _both(failed)
    assert out.answered == 2 and out.wire.count(b"HTTP/1.1 503") == 2


async def test_the_rate_limit_is_taken_once_per_request_with_the_lane() -> None:
    async def script(h: Harness) -> bytes:
        return await _send(h, *(_collect(h) for _ in range(5)))

    out = await _both(script, settings=make_settings(VIZ_COLLECT_RATE_LIMIT_PER_S="1",
                                                     VIZ_COLLECT_RATE_LIMIT_BURST="3"))
    assert out.wire.count(b"HTTP/1.1 204") == 3 and out.wire.count(b"HTTP/1.1 429") == 2
    assert out.answered == 2


async def test_a_delivery_timeout_answers_503_alike() -> None:
    async def script(h: Harness) -> bytes:
        await _send(h, _collect(h))
        h.sink.acknowledge = False
        conn = h.connect()
        conn.send(_collect(h))
        await conn.wait_responses(1, timeout_s=5.0)
        return bytes(conn.transport.buffer)

    out = await _both(script, make_sink=lambda: MemorySink(delivery_timeout_s=0.05))
    assert b"HTTP/1.1 503" in out.wire and b'"code": "delivery_timeout"' in out.wire


async def test_a_rotated_key_verifies_until_its_grace_ends_and_then_not() -> None:
    previous = bytes(range(100, 132))
    grace_ends = Harness().clock.time() + 60
    site = replace(make_site(), previous_key=previous, previous_key_expires_at=grace_ends)

    async def script(h: Harness) -> bytes:
        old = h.token(key=previous)
        wire = await _send(h, _collect(h), _collect(h, token=old), _collect(h))
        h.clock.advance(61)  # the previous key's grace is over; the token's window is not
        return wire + await _send(h, _collect(h, token=old), _collect(h))

    out = await _both(script, site=site)
    assert out.wire.count(b"HTTP/1.1 204") == 4
    assert out.wire.count(b"HTTP/1.1 403") == 1 and b'"token_invalid"' in out.wire
    assert out.answered == 3


# -- any sequence -------------------------------------------------------------------------------

_POOL = ["ok", "ok", "ok 3 events", "no origin", *sorted(HANDED_BACK)]


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(_POOL), min_size=1, max_size=8), st.booleans())
def test_any_sequence_of_requests_gets_the_same_answers(cases: list[str], pipelined: bool) -> None:
    def raw(h: Harness, case: str) -> bytes:
        if case == "ok":
            return _collect(h)
        if case == "ok 3 events":
            return _collect(h, events=3)
        if case == "no origin":
            return _collect(h, origin=None)
        return HANDED_BACK[case](h)

    async def script(h: Harness) -> bytes:
        if not pipelined:
            return await _send(h, *(raw(h, case) for case in cases))
        conn = h.connect()
        conn.send(b"".join(raw(h, case) for case in cases))
        await conn.wait_responses(len(cases))
        return bytes(conn.transport.buffer)

    asyncio.run(_both(script))


def test_the_lane_is_built_and_used_by_default() -> None:
    h = Harness()
    assert h.app.lane is not None
    assert h.app.handle == h.app.lane.handle
    assert Harness(lane=False).app.lane is None
