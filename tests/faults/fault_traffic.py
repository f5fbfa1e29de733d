"""A tracker-like client for fault tests, and the ledger that accounts for every event it sent.

Each simulated browser behaves as collect.js does: a BID and token from ``/init``, events with
ids made once and kept across retries, one request in flight at a time with up to 50 queued
events, a resend of the whole queue with capped exponential backoff (honouring ``Retry-After``)
after any failure, ``/init`` again after a 401. Every event id answered 204 is recorded, so the
ledger can say, by event id, what was acknowledged and then lost or counted twice.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

BROWSER_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/131.0.0.0 Safari/537.36")
MAX_BATCH = 50
MAX_QUEUE = 500


@dataclass
class Ledger:
    """What the client sent and what collect acknowledged, by event id."""

    phase_of: dict[str, str] = field(default_factory=dict)  # every id sent, with its phase
    acked: set[str] = field(default_factory=set)
    resent: set[str] = field(default_factory=set)  # acknowledged ids sent again on purpose
    statuses: Counter[str] = field(default_factory=Counter)  # answers seen, e.g. "204", "503"

    def account(self, counts: dict[str, int]) -> Accounting:
        """Compare with ``counts`` (event id → rows in ClickHouse)."""
        return Accounting(
            sent=len(self.phase_of), acknowledged=len(self.acked),
            counted=sum(1 for eid in self.phase_of if counts.get(eid, 0) > 0),
            lost=sorted(eid for eid in self.acked if counts.get(eid, 0) == 0),
            doubled=sorted(eid for eid, n in counts.items() if n > 1),
            unknown=sorted(eid for eid in counts if eid not in self.phase_of),
            resent=len(self.resent),
            lost_by_phase=dict(Counter(self.phase_of[eid] for eid in self.acked
                                       if counts.get(eid, 0) == 0)),
            statuses=dict(self.statuses))


@dataclass
class Accounting:
    sent: int
    acknowledged: int
    counted: int
    lost: list[str]
    doubled: list[str]
    unknown: list[str]
    resent: int
    lost_by_phase: dict[str, int]
    statuses: dict[str, int]

    def summary(self) -> str:
        return (f"sent {self.sent}, acknowledged {self.acknowledged}, counted {self.counted}, "
                f"lost {len(self.lost)} {self.lost_by_phase or ''}, doubled {len(self.doubled)}, "
                f"unknown {len(self.unknown)}, acknowledged ids re-sent {self.resent}; "
                f"answers {dict(sorted(self.statuses.items()))}")

    def assert_exact(self) -> None:
        """Every acknowledged event counted once, nothing counted twice or out of nowhere."""
        assert not self.lost and not self.doubled and not self.unknown, self.summary()


@dataclass
class _Browser:
    index: int
    bid: str = ""
    token: str = ""
    queue: list[dict[str, Any]] = field(default_factory=list)
    retry: int = 0
    next_try_at: float = 0.0


class TrackerTraffic:
    """Sends ``rate`` events/s from ``browsers`` browsers to collect, from a thread of its own.

    ``phase`` tags the events made from now on (their path starts with it); :meth:`resend`
    puts already-acknowledged events back into their browser's queue, as a tracker retry would.
    """

    def __init__(self, collect_url: str, *, sid: str = "demo", rate: float = 100.0,
                 browsers: int = 4, max_backoff_s: float = 2.0, seed: int = 7) -> None:
        self.collect_url = collect_url
        self.sid = sid
        self.rate = rate
        self.max_backoff_s = max_backoff_s
        self.ledger = Ledger()
        self.phase = "warmup"
        self._events: dict[str, tuple[int, dict[str, Any]]] = {}
        self._browsers = [_Browser(i) for i in range(browsers)]
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._producing = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_ack_at = 0.0

    # -- control, from the test's thread -------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True,
                                        name="tracker-traffic")
        self._thread.start()

    def set_phase(self, phase: str) -> None:
        with self._lock:
            self.phase = phase

    def acked_since(self, since: float) -> bool:
        return self.last_ack_at > since

    def wait_for_acks(self, *, timeout_s: float) -> None:
        """Until collect acknowledged something new (it serves again after a fault)."""
        mark = time.monotonic()
        deadline = mark + timeout_s
        while not self.acked_since(mark):
            assert time.monotonic() < deadline, f"no 204 for {timeout_s:.0f} s: " + \
                json.dumps(dict(self.ledger.statuses))
            time.sleep(0.05)

    def resend(self, event_ids: list[str]) -> None:
        with self._lock:
            for eid in event_ids:
                index, event = self._events[eid]
                self._browsers[index].queue.append(dict(event))
                self.ledger.resent.add(eid)

    def pick_acked(self, phase: str, n: int) -> list[str]:
        with self._lock:
            ids = sorted(eid for eid in self.ledger.acked if self.ledger.phase_of[eid] == phase)
        return ids[:n]

    def finish(self, *, timeout_s: float) -> None:
        """Stop making events; keep retrying the queues until empty or ``timeout_s``."""
        self._producing = False
        deadline = time.monotonic() + timeout_s
        while any(b.queue for b in self._browsers) and time.monotonic() < deadline:
            time.sleep(0.1)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    @property
    def unacknowledged(self) -> int:
        return sum(len(b.queue) for b in self._browsers)

    # -- the browsers, on the client's own event loop -------------------------------------------

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(self._browse(session, b) for b in self._browsers))

    async def _browse(self, session: aiohttp.ClientSession, browser: _Browser) -> None:
        per_browser = self.rate / len(self._browsers)
        next_event_at = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if self._producing and now >= next_event_at:
                self._make_events(browser, self._random.randint(1, 5))
                next_event_at = now + 3.0 / per_browser  # 3 events per request on average
            if browser.queue and now >= browser.next_try_at:
                await self._send(session, browser)
            else:
                await asyncio.sleep(0.005)

    def _make_events(self, browser: _Browser, n: int) -> None:
        with self._lock:
            room = MAX_QUEUE - len(browser.queue)
            for _ in range(min(n, room)):  # a full queue drops new events, as collect.js does
                eid = uuid.uuid4().hex
                event = {"id": eid, "t": "pageview", "p": f"/{self.phase}/{eid[:6]}",
                         "ts": int(time.time() * 1000)}
                self._events[eid] = (browser.index, event)
                self.ledger.phase_of[eid] = self.phase
                browser.queue.append(event)

    async def _init(self, session: aiohttp.ClientSession, browser: _Browser) -> bool:
        params = {"sid": self.sid, "tier": "1"}
        if browser.bid:
            params["bid"] = browser.bid
        try:
            async with session.get(f"{self.collect_url}/init", params=params,
                                   headers={"User-Agent": BROWSER_UA}) as resp:
                if resp.status != 200:
                    self._failed(browser, str(resp.status), resp.headers.get("Retry-After"))
                    return False
                ident = await resp.json()
        except (TimeoutError, aiohttp.ClientError) as exc:
            self._failed(browser, type(exc).__name__, None)
            return False
        browser.bid, browser.token = ident["bid"], ident["token"]
        return True

    async def _send(self, session: aiohttp.ClientSession, browser: _Browser) -> None:
        if not browser.token and not await self._init(session, browser):
            return
        with self._lock:
            batch = browser.queue[:MAX_BATCH]
        body = json.dumps({"sid": self.sid, "bid": browser.bid, "token": browser.token,
                           "events": batch})
        try:
            async with session.post(f"{self.collect_url}/collect", data=body, headers={
                    "User-Agent": BROWSER_UA, "Content-Type": "text/plain"}) as resp:
                status, retry_after = resp.status, resp.headers.get("Retry-After")
                dropped = resp.headers.get("X-Viz-Dropped")
                await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            self._failed(browser, type(exc).__name__, None)
            return
        if status == 204 and not dropped:
            with self._lock:
                self.ledger.statuses["204"] += 1
                sent = {e["id"] for e in batch}
                self.ledger.acked.update(sent)
                browser.queue = [e for e in browser.queue if e["id"] not in sent]
            browser.retry = 0
            self.last_ack_at = time.monotonic()
        elif status == 401:
            self.ledger.statuses["401"] += 1
            browser.token = ""  # a fresh token from /init, then the same events again
        else:
            self._failed(browser, f"{status}" + (f" {dropped}" if dropped else ""), retry_after)

    def _failed(self, browser: _Browser, what: str, retry_after: str | None) -> None:
        with self._lock:
            self.ledger.statuses[what] += 1
        backoff = min(self.max_backoff_s, 0.1 * 2 ** browser.retry)
        backoff *= 0.5 + self._random.random() / 2
        if retry_after and retry_after.isdigit():
            backoff = max(backoff, min(float(retry_after), self.max_backoff_s))
        browser.retry += 1
        browser.next_try_at = time.monotonic() + backoff


def count_events(data_dir: Path, *, sid: str = "demo") -> dict[str, int]:
    """Rows per tracker event id in a stopped `viz up`'s ClickHouse (chDB opens one path per
    process, so a child process reads it)."""
    script = (
        "import json, sys, clickhouse_connect\n"
        "c = clickhouse_connect.get_client(dsn='chdb://' + sys.argv[1])\n"
        "rows = c.query('SELECT event_id, count() FROM viz.traffic WHERE site_id = {s:String} "
        "GROUP BY event_id', parameters={'s': sys.argv[2]}).result_rows\n"
        "json.dump({str(k): int(n) for k, n in rows}, sys.stdout)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(data_dir / "clickhouse"), sid],
                         capture_output=True, text=True, timeout=300, check=True)
    counts: Counter[str] = Counter()
    for eid, n in json.loads(out.stdout).items():
        counts[eid.rpartition(":")[2]] += n  # the warehouse's id is "sid:bid:id"
    return dict(counts)
