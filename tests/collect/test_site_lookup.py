"""SiteDirectory.get_nowait: the synchronous part of get() that collect's hot path uses."""

from __future__ import annotations

import asyncio

from viz.common.clock import ManualClock
from viz.common.site_directory import SiteDirectory

from .support import FakeFetcher, make_site

MISS = object()


def directory(fetcher: FakeFetcher, clock: ManualClock) -> SiteDirectory:
    return SiteDirectory(fetcher, clock=clock, ttl_s=300, max_stale_s=3600, negative_ttl_s=30)


async def test_a_miss_answers_the_default_and_counts_nothing() -> None:
    fetcher = FakeFetcher(make_site())
    d = directory(fetcher, ManualClock())
    assert d.get_nowait("site-one", MISS) is MISS
    assert d.get_nowait("not a sid!", MISS) is MISS  # get() answers it, without a lookup
    assert (d.hits, d.misses, d.negative_hits, fetcher.calls) == (0, 0, 0, 0)
    await d.close()


async def test_a_cached_site_is_answered_and_counted_like_get() -> None:
    clock = ManualClock()
    fetcher = FakeFetcher(make_site())
    d = directory(fetcher, clock)
    site = await d.get("site-one")
    assert d.get_nowait("site-one", MISS) is site
    assert d.hits == 1
    fetcher.fail = True
    clock.advance(301)  # stale but usable: served, and one background refresh starts (fails)
    assert d.get_nowait("site-one", MISS) is site
    assert d.stale_served == 1
    for _ in range(3):
        await asyncio.sleep(0)
    assert fetcher.calls == 2 and d.fetch_errors == 1
    clock.advance(3600)  # past max_stale: only get() may answer
    assert d.get_nowait("site-one", MISS) is MISS
    await d.close()


async def test_a_cached_unknown_site_is_none() -> None:
    clock = ManualClock()
    d = directory(FakeFetcher(), clock)
    assert await d.get("site-two") is None
    assert d.get_nowait("site-two", MISS) is None
    assert d.negative_hits == 1
    clock.advance(31)
    assert d.get_nowait("site-two", MISS) is MISS
    await d.close()
