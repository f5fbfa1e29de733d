"""Visitor journeys against viz-collect, for SREs sizing a deployment (see README.md here).

Each locust user is one browser: it consents (tier 1), calls ``GET /init`` for a BID and a
token, then reads a few pages. Per page it sends a pageview, active-time events while the visitor
reads (and one when the page is hidden), sometimes an exit-link click, with think times drawn
from exponential distributions. Tokens are refreshed before ``exp`` and, as the tracker does,
on ``401 token_expired`` the events are resent with their original ids. Between visits a user
is sometimes a returning visitor (same BID through the ``viz_bid`` cookie), otherwise a new
one (cookies cleared: new BID).

    locust -f loadtest/locustfile.py --host http://127.0.0.1:3001 --sid demo \
        --headless -u 200 -r 50 -t 1m

Options (each also an environment variable): ``--sid`` (``VIZ_LOADTEST_SID``), ``--origin``
(``VIZ_LOADTEST_ORIGIN``: a page origin allowed for the site, default ``https://<sid>.example``),
``--pace`` (``VIZ_LOADTEST_PACE``: think-time multiplier; 1 = real visitors, 0.01 = a hundred
times faster, which is how a few thousand users produce tens of thousands of requests/s).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from typing import Any

import gevent
from locust import FastHttpUser, events, task
from locust.exception import StopUser

# Think times in seconds at --pace 1 (means of exponential distributions, capped).
DWELL_MEAN_S = 40.0  # reading one page
ACTIVE_FLUSH_S = 15.0  # the tracker flushes active time about this often while visible
BETWEEN_VISITS_MEAN_S = 300.0
PAGES_MEAN = 3.0  # pages per visit (geometric)
EXIT_CLICK_P = 0.25  # a visit ends on an outbound link
RETURNING_P = 0.4  # the next visit keeps the BID
TOKEN_REFRESH_MARGIN_S = 30.0
MAX_RESENDS = 3

UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
      "Chrome/126.0.0.0 Safari/537.36")
REFERRERS = ("https://www.google.com/", "https://news.ycombinator.com/", "https://t.co/x",
             "", "", "")
SECTIONS = ("news", "sport", "culture", "tech", "opinion")


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--sid", env_var="VIZ_LOADTEST_SID", default="demo",
                        help="site id to send events for (must exist in viz-config)")
    parser.add_argument("--origin", env_var="VIZ_LOADTEST_ORIGIN", default="",
                        help="Origin header: one of the site's domains (default https://SID.example)")
    parser.add_argument("--pace", env_var="VIZ_LOADTEST_PACE", type=float, default=1.0,
                        help="think-time multiplier (1 = real visitors, 0.01 = 100x faster)")
    parser.add_argument("--tier", env_var="VIZ_LOADTEST_TIER", type=int, default=1, choices=(1, 2),
                        help="consent tier the visitors choose")


def _event_id() -> str:
    return uuid.uuid4().hex[:20]


def _error_code(body: bytes | str | None) -> str:
    try:
        err = json.loads(body or b"{}").get("error")
    except (ValueError, AttributeError):
        return ""
    return str(err.get("code", "")) if isinstance(err, dict) else str(err or "")


class Visitor(FastHttpUser):
    """One browser with the Viz tracker on a site's pages."""

    # The journey paces itself; this only separates two visits of the same user.
    def wait_time(self) -> float:
        return min(random.expovariate(1 / BETWEEN_VISITS_MEAN_S), 3 * BETWEEN_VISITS_MEAN_S) * self.pace

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        self.sid: str = opts.sid if opts else "demo"
        self.origin: str = (opts.origin if opts and opts.origin else f"https://{self.sid}.example")
        self.pace: float = max(opts.pace if opts else 1.0, 0.0)
        self.tier: int = opts.tier if opts else 1
        self.bid = ""
        self.token = ""
        self.exp = 0.0
        self.headers = {"User-Agent": UA, "Origin": self.origin,
                        "Content-Type": "text/plain;charset=UTF-8"}

    # -- the journey ----------------------------------------------------------------------------

    @task
    def visit(self) -> None:
        if random.random() >= RETURNING_P:
            self.client.cookiejar.clear()  # a new visitor: /init issues a new BID
            self.bid = ""
        self.refresh_token()
        referrer = random.choice(REFERRERS)
        pages = 1
        while random.random() > 1 / PAGES_MEAN:
            pages += 1
        for n in range(pages):
            section = random.choice(SECTIONS)
            path = f"/{section}/{random.randint(1, 5000)}"
            self.send("pageview", [{"id": _event_id(), "t": "pageview", "p": path, "r": referrer,
                                    "ts": self.now_ms(), "title": f"{section} story"}])
            self.read(path)
            if n == pages - 1 and random.random() < EXIT_CLICK_P:
                self.send("exit", [{"id": _event_id(), "t": "exit", "p": path,
                                    "h": "https://elsewhere.example/article", "ts": self.now_ms()}])
            referrer = self.origin + path

    def read(self, path: str) -> None:
        """Dwell on a page: active-time flushes while visible, one more when the page hides."""
        dwell_s = min(random.expovariate(1 / DWELL_MEAN_S), 10 * DWELL_MEAN_S)
        while dwell_s > 0:
            slice_s = min(dwell_s, ACTIVE_FLUSH_S)
            self.pause(slice_s)
            dwell_s -= slice_s
            active_ms = int(slice_s * 1000 * random.uniform(0.3, 1.0))  # visible and interacting
            self.send("active", [{"id": _event_id(), "t": "active", "p": path,
                                  "ms": active_ms, "ts": self.now_ms()}])

    def pause(self, seconds: float) -> None:
        gevent.sleep(seconds * self.pace)

    @staticmethod
    def now_ms() -> int:
        return int(time.time() * 1000)

    # -- the tracker's protocol -----------------------------------------------------------------

    def refresh_token(self) -> None:
        url = f"/init?sid={self.sid}&tier={self.tier}" + (f"&bid={self.bid}" if self.bid else "")
        with self.client.get(url, headers={"User-Agent": UA, "Origin": self.origin},
                             name="/init", catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"/init answered {resp.status_code}: {_error_code(resp.content)}")
                raise StopUser()  # without a token this visitor can send nothing
            try:
                answer = json.loads(resp.content)
                self.bid, self.token = answer["bid"], answer["token"]
                self.exp = float(answer.get("exp") or time.time() + 300)
            except (ValueError, KeyError, TypeError) as exc:
                resp.failure(f"/init answer unreadable: {exc}")
                raise StopUser() from None

    def send(self, kind: str, evs: list[dict[str, Any]]) -> None:
        """POST /collect like collect.js: refresh a token about to expire, resend on 401/503."""
        if time.time() > self.exp - TOKEN_REFRESH_MARGIN_S:
            self.refresh_token()
        for attempt in range(MAX_RESENDS + 1):
            body = json.dumps({"sid": self.sid, "bid": self.bid, "token": self.token,
                               "events": evs}, separators=(",", ":"))
            with self.client.post("/collect", data=body, headers=self.headers,
                                  name=f"/collect [{kind}]", catch_response=True) as resp:
                status = resp.status_code
                if status == 204:
                    resp.success()
                    return
                code = _error_code(resp.content)
                if status == 401 and code == "token_expired" and attempt < MAX_RESENDS:
                    resp.success()  # expected in long visits; the tracker handles it
                    self.refresh_token()
                    continue
                if status in (429, 503) and attempt < MAX_RESENDS:
                    resp.failure(f"{status} {code}: retrying")
                    retry_after = float(resp.headers.get("Retry-After") or 1)
                    gevent.sleep(min(retry_after, 5.0) * (attempt + 1))
                    continue
                resp.failure(f"{status} {code}")
                return
