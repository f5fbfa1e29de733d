"""Realistic, deterministic traffic for the pipeline benchmarks: envelopes as collect writes them.

~50 sites with skewed traffic, a few thousand distinct user agents, referrers and paths, UTM
parameters and ad click ids on some pageviews, the five event types in a plausible mix.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from dataclasses import dataclass

from viz._fast.envelope import encode_envelope
from viz._fast.payload import Event

_B64 = string.ascii_letters + string.digits + "-_"

# (type, share): a pageview is usually followed by activity pings and an exit.
EVENT_MIX = (("pageview", 0.45), ("active", 0.25), ("exit", 0.12), ("event", 0.06),
             ("hit", 0.12))


def _user_agents() -> list[str]:
    """About 5,000 distinct user agents, most popular first."""
    uas: list[str] = []
    desktop = ("Windows NT 10.0; Win64; x64", "Macintosh; Intel Mac OS X 10_15_7", "X11; Linux x86_64")
    for major in range(131, 99, -1):
        for os_ in desktop:
            uas.append(f"Mozilla/5.0 ({os_}) AppleWebKit/537.36 (KHTML, like Gecko) "
                       f"Chrome/{major}.0.0.0 Safari/537.36")
    models = ("Pixel 7", "Pixel 8", "SM-S918B", "SM-A546B", "SM-G991B", "M2101K6G", "CPH2451",
              "moto g(60)", "SM-X700", "Lenovo TB-X606F", "K", "2201116SG")
    for major in range(131, 109, -1):
        for android in range(10, 15):
            for model in models:
                mobile = "" if model in ("SM-X700", "Lenovo TB-X606F") else " Mobile"
                uas.append(f"Mozilla/5.0 (Linux; Android {android}; {model}) AppleWebKit/537.36 "
                           f"(KHTML, like Gecko) Chrome/{major}.0.0.0{mobile} Safari/537.36")
    for ios in range(15, 19):
        for minor in range(0, 7):
            for device in ("iPhone; CPU iPhone OS", "iPad; CPU OS"):
                uas.append(f"Mozilla/5.0 ({device} {ios}_{minor} like Mac OS X) "
                           f"AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{ios}.{minor} "
                           f"Mobile/15E148 Safari/604.1")
    for major in range(133, 100, -1):
        for os_ in ("Windows NT 10.0; Win64; x64", "X11; Linux x86_64; ", "Macintosh; Intel Mac OS X 10.15"):
            uas.append(f"Mozilla/5.0 ({os_.rstrip('; ')}; rv:{major}.0) Gecko/20100101 "
                       f"Firefox/{major}.0")
            uas.append(f"Mozilla/5.0 ({os_.rstrip('; ')}) AppleWebKit/537.36 (KHTML, like Gecko) "
                       f"Chrome/{major - 2}.0.0.0 Safari/537.36 Edg/{major - 2}.0.{major * 7}.{major}")
    # The long tail: exact build numbers, as real Chrome reduced-UA stragglers still send.
    for build in range(6000, 6000 + 2600):
        major = 100 + build % 32
        uas.append(f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                   f"Gecko) Chrome/{major}.0.{build}.{build % 97} Safari/537.36")
    bots = ["Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "curl/8.5.0", "python-requests/2.32.3", "Go-http-client/1.1",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "HeadlessChrome/131.0.0.0 Safari/537.36"]
    # Bots about 3% of picks: put them where the skewed sampler lands now and then.
    for i, bot in enumerate(bots):
        uas.insert(40 + 37 * i, bot)
    return uas


def _referrers(domains: list[str]) -> list[str]:
    refs = ["https://www.google.com/", "https://www.google.de/", "https://www.google.fr/",
            "https://www.bing.com/", "https://duckduckgo.com/", "https://t.co/",
            "https://news.ycombinator.com/", "https://l.facebook.com/", "https://www.reddit.com/",
            "https://mail.google.com/", "https://bsky.app/", "https://www.linkedin.com/"]
    for i in range(1500):
        refs.append(f"https://www.bing.com/search?q=viz+analytics+{i}&form=QBLH")
        refs.append(f"https://t.co/{_code(i, 10)}")
    for i in range(800):
        refs.append(f"https://blog{i % 120}.example.org/posts/{i}/links")
    for i, domain in enumerate(domains):  # internal navigation
        for j in range(20):
            refs.append(f"https://{domain}/section-{j}/article-{i * 20 + j}")
    return refs


def _code(i: int, width: int) -> str:
    rnd = random.Random(i)
    return "".join(rnd.choice(_B64[:62]) for _ in range(width))


@dataclass
class Site:
    sid: str
    tid: str
    domain: str
    paths: list[str]


def sites(n_sites: int = 50, paths_per_site: int = 120) -> list[Site]:
    out = []
    for i in range(n_sites):
        sid = f"site-{i:03d}"
        paths = ["/"] + [f"/{'news' if j % 3 else 'shop'}/item-{j}-{_code(i * 1000 + j, 6)}"
                         for j in range(paths_per_site - 1)]
        out.append(Site(sid, f"tenant-{i // 4:02d}", f"{sid}.example.com", paths))
    return out


_UTMS = ("?utm_source=newsletter&utm_medium=email&utm_campaign=weekly-{n}",
         "?utm_source=google&utm_medium=cpc&utm_campaign=brand&utm_term=viz+{n}",
         "?utm_source=facebook&utm_medium=paid_social&utm_content=ad-{n}",
         "?gclid=Cj0KCQiA{n}xyz", "?fbclid=IwAR{n}abc", "?ref=producthunt&page={n}")


class Workload:
    """Yields ``(sid, envelope_bytes)``; the same ``seed`` gives the same events."""

    def __init__(self, *, seed: int = 1, n_sites: int = 50, start_ms: int, span_ms: int) -> None:
        self.rnd = random.Random(seed)
        self.sites = sites(n_sites)
        self.uas = _user_agents()
        self.refs = _referrers([s.domain for s in self.sites])
        self.start_ms = start_ms
        self.span_ms = span_ms
        types, weights = zip(*EVENT_MIX, strict=True)
        self.types = list(types)
        self.cum = list(_cumulative(weights))
        # Site weights ~ 1/rank: the biggest site gets ~20% of events, the smallest ~0.4%.
        self.site_cum = list(_cumulative([1 / (k + 1) for k in range(n_sites)]))
        self.visitors = [["".join(self.rnd.choice(_B64) for _ in range(22)) for _ in range(2000)]
                         for _ in range(n_sites)]

    def _skewed(self, items: list[str], power: float = 3.0) -> str:
        return items[int(len(items) * self.rnd.random() ** power)]

    def events(self, n: int) -> Iterator[tuple[str, bytes]]:
        rnd = self.rnd
        for i in range(n):
            site_idx = _pick(self.site_cum, rnd.random())
            site = self.sites[site_idx]
            t = self.types[_pick(self.cum, rnd.random())]
            path = self._skewed(site.paths, 2.0)
            referrer = None
            title = name = href = None
            ms = None
            if t in ("pageview", "hit"):
                u = rnd.random()
                if u < 0.10:
                    path += _UTMS[rnd.randrange(len(_UTMS))].format(n=rnd.randrange(50))
                if rnd.random() < 0.55:
                    referrer = self._skewed(self.refs, 2.0)
                if rnd.random() < 0.03:
                    path += "#comments"
                title = f"Item {i % 997} – {site.sid}" if t == "pageview" else None
            elif t == "active":
                ms = rnd.randrange(1000, 120_000)
            elif t == "exit":
                href = f"https://outbound{rnd.randrange(300)}.example.net/x"
            else:
                name = ("signup", "download", "play", "share", "scroll-75")[rnd.randrange(5)]
            bid = None if t == "hit" else self.visitors[site_idx][int(2000 * rnd.random() ** 1.5)]
            ts = self.start_ms + (i * self.span_ms) // max(n, 1)
            event = Event(f"e{i:09x}", t, path, referrer, ts - rnd.randrange(500), ms, href,
                          name, title)
            yield site.sid, encode_envelope(event, sid=site.sid, tid=site.tid, bid=bid,
                                            ua=self._skewed(self.uas), tier=0 if t == "hit" else 1,
                                            server_ms=ts)


def _cumulative(weights: tuple[float, ...] | list[float]) -> Iterator[float]:
    total = sum(weights)
    acc = 0.0
    for w in weights:
        acc += w / total
        yield acc


def _pick(cum: list[float], u: float) -> int:
    for i, c in enumerate(cum):
        if u < c:
            return i
    return len(cum) - 1
