"""Token buckets per client: bursts pass, floods get a wait, memory stays bounded."""

from __future__ import annotations

import pytest

from viz.collect.ratelimit import RateLimiter, client_key, retry_after_s

from .support import SID, Harness, get, make_settings, make_site, post

pytestmark = pytest.mark.usefixtures("connection_twin")


def test_a_burst_passes_then_the_rate_refills_one_request_at_a_time() -> None:
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.take("a", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", 100.0) == pytest.approx(0.5)  # one token refills in 1/rate s
    assert limiter.take("a", 100.25) == pytest.approx(0.25)  # half a token so far
    assert limiter.take("a", 100.5) == 0.0
    assert limiter.take("a", 100.5) == pytest.approx(0.5)
    # A long pause refills to the burst, never beyond it.
    assert [limiter.take("a", 200.0) for _ in range(4)][-1] > 0.0


def test_clients_have_separate_buckets() -> None:
    limiter = RateLimiter(rate=1.0, burst=1)
    assert limiter.take("a", 0.0) == 0.0
    assert limiter.take("a", 0.0) > 0.0
    assert limiter.take("b", 0.0) == 0.0


def test_the_number_of_buckets_is_bounded_by_forgetting_the_oldest() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_clients=2)
    for client in ("a", "b", "c"):
        limiter.take(client, 0.0)
    assert len(limiter) == 2
    assert limiter.take("a", 0.0) == 0.0  # forgotten, so a fresh bucket
    assert limiter.take("c", 0.0) > 0.0  # still limited


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate=0.0, burst=1)
    with pytest.raises(ValueError):
        RateLimiter(rate=1.0, burst=0)


@pytest.mark.parametrize(("wait", "header"), [(0.01, 1), (1.0, 1), (1.2, 2), (30.0, 30)])
def test_retry_after_is_whole_seconds_and_never_zero(wait: float, header: int) -> None:
    assert retry_after_s(wait) == header


@pytest.mark.parametrize(("address", "key"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),  # same subscriber block, same bucket
    ("[2001:db8:1:3::1]", "2001:db8:1:3::/64"),
    ("::ffff:203.0.113.7", "203.0.113.7"),  # IPv4 seen through a dual-stack socket
    ("198.51.100.1, 203.0.113.7", "203.0.113.7"),  # X-Forwarded-For: the proxy's entry
    ("not-an-address", "not-an-address"),
    ("zz:zz", "zz:zz"),
])
def test_client_keys(address: str, key: str) -> None:
    assert client_key(address) == key


# -- through the app: 429 with Retry-After, per client address -----------------------------------

async def limited_harness(**environ: str) -> Harness:
    settings = make_settings(VIZ_COLLECT_RATE_LIMIT_PER_S="1", VIZ_COLLECT_RATE_LIMIT_BURST="2",
                             **environ)
    harness = Harness(make_site(), settings=settings)
    await harness.warm()
    return harness


async def test_a_client_over_its_rate_gets_429_with_retry_after_until_it_refills() -> None:
    h = await limited_harness()
    conn = h.connect(peer="203.0.113.7")
    statuses = [(await conn.request(post("/collect", h.body()))).status for _ in range(2)]
    assert statuses == [204, 204]
    refused = await conn.request(post("/collect", h.body()))
    assert refused.status == 429
    assert refused.header("retry-after") == "1"
    assert refused.json() == {"error": {"code": "rate_limited"}}
    assert h.sample("viz_collect_failures_total", code="rate_limited") == 1
    assert len(h.sink.messages) == 2  # the refused request produced nothing
    # /init and /hit share the bucket; another address has its own.
    assert (await conn.request(get(f"/init?sid={SID}&tier=1"))).status == 429
    other = h.connect(peer="198.51.100.9")
    assert (await other.request(post("/collect", h.body()))).status == 204
    h.clock.advance(1.0)
    assert (await conn.request(post("/collect", h.body()))).status == 204


async def test_behind_a_load_balancer_the_configured_header_names_the_client() -> None:
    h = await limited_harness(VIZ_COLLECT_CLIENT_ADDRESS="x-forwarded-for")
    balancer = h.connect(peer="10.0.0.2")  # every request arrives from the balancer

    def via(client: str) -> bytes:
        return post("/collect", h.body(), headers=f"X-Forwarded-For: {client}\r\n".encode())

    assert [(await balancer.request(via("203.0.113.7"))).status for _ in range(3)] == [
        204, 204, 429]
    assert (await balancer.request(via("198.51.100.9"))).status == 204


async def test_a_limit_of_zero_turns_the_limiter_off() -> None:
    h = Harness(make_site(), settings=make_settings(VIZ_COLLECT_RATE_LIMIT_PER_S="0",
                                                    VIZ_COLLECT_RATE_LIMIT_BURST="1"))
    await h.warm()
    conn = h.connect(peer="203.0.113.7")
    assert {(await conn.request(post("/collect", h.body()))).status for _ in range(5)} == {204}
