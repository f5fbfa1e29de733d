"""A broker stall under tracker-like traffic: no 204 without the event in the topic, and 204s
again within seconds of the broker's return (issue 11, finding 1).

The broker is SIGSTOPped for longer than collect's delivery deadline, then SIGCONTinued. With
an idempotent producer this once made librdkafka bump its epoch locally after every timed-out
batch; Tansu fenced each new epoch, and after 32,767 bumps the epoch wrapped back to the one
Tansu knew, whose sequence numbers were far ahead: every batch was a "duplicate", acknowledged
and never stored. Here the stall is short, so the test asserts what a user sees first (503s that
never end) and, over everything it sent, that every id answered 204 is in the topic.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from viz.embedded import EmbeddedKafka

from .broker_support import broker_pid, own_broker, start_collect
from .kafka_support import fresh_topics, read_ids
from .test_kafka import HEADERS, collect_body, init, wait_ready

pytestmark = pytest.mark.slow

DELIVERY_TIMEOUT_S = 1.5
STALL_S = 6.0
"""Four delivery deadlines: every request in flight at the stop times out, and so do the
tracker's retries during it."""
RECOVERY_S = 5.0
"""The broker is back: collect must answer 204 again within this long."""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedKafka]:
    with own_broker(tmp_path / "kafka") as server:
        yield server


@dataclass
class Tracker:
    """Sends like collect.js: 1-5 new events per request; a 503 (or a lost connection) is sent
    again with the same event ids after a backoff, until it is answered 204."""

    http: aiohttp.ClientSession
    base: str
    ident: dict
    acked: dict[str, float] = field(default_factory=dict)
    """Event id -> loop time of its 204."""
    answers: list[tuple[float, int]] = field(default_factory=list)
    """``(loop time, status)`` of every answer (0: no answer, the connection failed)."""

    async def run(self, worker: int, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        rng = random.Random(worker)
        n = 0
        while not stop.is_set():
            ids = [f"stall-w{worker}-{n}-{k}" for k in range(rng.randint(1, 5))]
            n += 1
            backoff_s = 0.05
            while not stop.is_set():
                body = json.dumps(collect_body("site-one", self.ident, ids))
                try:
                    async with self.http.post(self.base + "/collect", data=body,
                                              headers=HEADERS) as resp:
                        status = resp.status
                        await resp.read()
                except aiohttp.ClientError:
                    status = 0
                self.answers.append((loop.time(), status))
                if status == 204:
                    self.acked.update(dict.fromkeys(ids, loop.time()))
                    break
                assert status in (0, 503), f"unexpected answer {status}"
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 0.5)
            await asyncio.sleep(0.02)  # a few hundred events per second in all

    def first_204_after(self, t: float) -> float | None:
        return next((at for at, status in self.answers if at >= t and status == 204), None)

    def statuses_between(self, start: float, end: float) -> list[int]:
        return [status for at, status in self.answers if start <= at < end]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_a_broker_stall_never_acknowledges_an_event_it_did_not_store_and_recovers(
        broker: EmbeddedKafka, http: aiohttp.ClientSession) -> None:
    kafka = fresh_topics(broker.bootstrap)
    pid = broker_pid(broker)
    server = await start_collect(kafka, delivery_timeout_s=DELIVERY_TIMEOUT_S)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    try:
        base = f"http://127.0.0.1:{server.port}"
        await wait_ready(http, base)
        tracker = Tracker(http, base, await init(http, base, "site-one"))
        workers = [asyncio.create_task(tracker.run(w, stop)) for w in range(4)]
        try:
            await asyncio.sleep(2.0)
            assert tracker.acked, "no traffic got through before the stall"
            stopped_at = loop.time()
            os.kill(pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(STALL_S)
            finally:
                os.kill(pid, signal.SIGCONT)
            resumed_at = loop.time()
            stalled = tracker.statuses_between(stopped_at + DELIVERY_TIMEOUT_S + 0.5, resumed_at)
            assert stalled and 204 not in stalled, "the stall did not stop deliveries"
            await asyncio.sleep(RECOVERY_S)
            first = tracker.first_204_after(resumed_at)
            assert first is not None and first - resumed_at <= RECOVERY_S, (
                f"no 204 within {RECOVERY_S} s of the broker's return "
                f"(first after {None if first is None else round(first - resumed_at, 1)} s)")
            settled = tracker.statuses_between(loop.time() - 2.0, loop.time())
            assert settled and settled.count(204) >= 0.9 * len(settled), settled
        finally:
            stop.set()
            await asyncio.gather(*workers)
    finally:
        await server.stop()

    stored = await read_ids(kafka, set(tracker.acked))
    lost = sorted(tracker.acked.keys() - stored)
    assert not lost, (
        f"{len(lost)} of {len(tracker.acked)} ids answered 204 are not in the topic; answered "
        f"at (s after the stop): {sorted({round(tracker.acked[i] - stopped_at, 2) for i in lost})}"
        f", broker back at {round(resumed_at - stopped_at, 2)}")
