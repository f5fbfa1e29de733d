"""Derived columns for one event: browser/os/device/bot from the user agent, medium/source.

User agents are parsed by ua-parser (the maintained uap-core rules); referrers are classified
by referer-parser's list of search engines, social networks and webmail hosts, plus UTM
parameters and ad click ids. Both lookups are cached: real traffic repeats a few thousand
distinct user agents and referrers, and the consumer must keep up with 100k events/s.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qsl, urlsplit

from referer_parser import Referer
from ua_parser import parse as parse_ua

# Clients that are not people's browsers. uap-core already marks crawlers as device "Spider";
# these are the HTTP libraries and headless browsers it names but does not flag.
_NON_HUMAN_FAMILIES = frozenset({
    "curl", "Wget", "Python Requests", "Python-urllib", "Go-http-client", "Java", "okhttp",
    "HeadlessChrome", "PhantomJS", "Apache-HttpClient", "aiohttp", "axios", "node-fetch",
})
_MOBILE_OS = frozenset({"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Tizen"})
_TABLET_DEVICES = ("iPad", "Kindle", "Tablet", "Nexus 7", "Nexus 9", "Nexus 10")

# Ad click ids: their presence means a paid click, whatever the referrer says.
_CLICK_IDS = {
    "gclid": ("paid", "Google"), "gbraid": ("paid", "Google"), "wbraid": ("paid", "Google"),
    "dclid": ("paid", "Google"), "msclkid": ("paid", "Bing"), "ttclid": ("paid", "TikTok"),
    "twclid": ("paid", "Twitter"), "li_fat_id": ("paid", "LinkedIn"),
    "fbclid": ("social", "Facebook"),  # also set on organic Facebook shares
}
_UTM_MEDIUM = {
    "cpc": "paid", "ppc": "paid", "paid": "paid", "paidsearch": "paid", "paid_search": "paid",
    "cpm": "paid", "display": "paid", "paid_social": "paid", "paidsocial": "paid",
    "email": "email", "e-mail": "email", "newsletter": "email",
    "social": "social", "social-network": "social", "social_network": "social", "sm": "social",
    "organic": "search", "referral": "referral",
}
# Hosts newer than referer-parser's list, kept short on purpose.
_EXTRA_HOSTS = {
    "tiktok.com": ("social", "TikTok"), "threads.net": ("social", "Threads"),
    "bsky.app": ("social", "Bluesky"), "x.com": ("social", "Twitter"),
    "news.ycombinator.com": ("social", "Hacker News"), "mastodon.social": ("social", "Mastodon"),
}


@dataclass(frozen=True, slots=True)
class Agent:
    browser: str
    browser_version: str
    os: str
    device: str  # desktop | mobile | tablet | bot
    is_bot: bool


@dataclass(frozen=True, slots=True)
class Attribution:
    medium: str
    source: str
    referrer_host: str
    utm_source: str = ""
    utm_medium: str = ""
    utm_campaign: str = ""
    utm_term: str = ""
    utm_content: str = ""


@lru_cache(maxsize=20_000)
def agent(user_agent: str) -> Agent:
    """Classify a user agent. An empty one is treated as a bot: every browser sends one."""
    if not user_agent:
        return Agent("", "", "", "bot", True)
    parsed = parse_ua(user_agent)
    browser = parsed.user_agent.family if parsed.user_agent else "Other"
    version = (parsed.user_agent.major or "") if parsed.user_agent else ""
    os_family = parsed.os.family if parsed.os else "Other"
    device_family = parsed.device.family if parsed.device else ""
    is_bot = device_family == "Spider" or browser in _NON_HUMAN_FAMILIES
    if is_bot:
        device = "bot"
    elif any(t in device_family for t in _TABLET_DEVICES) or (
            os_family == "Android" and "Mobile" not in user_agent):
        device = "tablet"
    elif os_family in _MOBILE_OS:
        device = "mobile"
    else:
        device = "desktop"
    return Agent(browser, version, os_family, device, is_bot)


@lru_cache(maxsize=20_000)
def agent_columns(user_agent: str) -> tuple[str, str, str, str, int]:
    """`agent()` as the row's columns: browser, browser_version, os, device, is_bot (0/1)
    (cached on its own: the consumer calls only this one)."""
    found = agent.__wrapped__(user_agent)
    return (found.browser, found.browser_version, found.os, found.device, int(found.is_bot))


def _host(url: str) -> str:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host[4:] if host.startswith("www.") else host


@lru_cache(maxsize=20_000)
def _classify_referrer(referrer: str) -> tuple[str, str]:
    host = _host(referrer)
    if not host:
        return ("direct", "")
    for extra_host, found in _EXTRA_HOSTS.items():
        if host == extra_host or host.endswith("." + extra_host):
            return found
    parsed = Referer(referrer)
    if parsed.medium in ("search", "social", "email") and parsed.referer:
        return (parsed.medium, parsed.referer)
    return ("referral", host)


def attribute(path: str, referrer: str) -> Attribution:
    """Medium and source of one event from its path's query string and its referrer."""
    return attribution(path.partition("?")[2], referrer)


# Keyed on the query string, not the path: most events have none, so (query, referrer) pairs
# repeat far more than paths do. Keys are at most 2 × 2048 characters (the payload limits):
# 16k entries bound the cache to tens of MB even when every event is new.
@lru_cache(maxsize=16_384)
def attribution(query: str, referrer: str) -> Attribution:
    """Medium and source from a query string (without ``?`` or ``#``) and a referrer.

    Precedence: ad click ids, then UTM parameters, then the referrer. The tracker sends a
    referrer on the page's own host as a bare path: that is ``internal`` (navigation, not
    acquisition); no referrer at all is ``direct``.
    """
    params = {k.lower(): v for k, v in parse_qsl(query)} if query else {}
    utm = {k: params.get("utm_" + k, "")[:256] for k in ("source", "medium", "campaign", "term",
                                                       "content")}
    referrer_host = _host(referrer)
    if referrer.startswith("/") and not referrer.startswith("//"):
        medium, source = "internal", ""
    else:
        medium, source = _classify_referrer(referrer)
    for click_id, (click_medium, click_source) in _CLICK_IDS.items():
        if click_id in params:
            medium, source = click_medium, click_source
            break
    else:
        if utm["medium"] or utm["source"]:
            medium = _UTM_MEDIUM.get(utm["medium"].lower(), medium if medium != "direct"
                                     else "referral")
            source = utm["source"] or source
    return Attribution(medium, source, referrer_host, utm["source"], utm["medium"],
                       utm["campaign"], utm["term"], utm["content"])


@lru_cache(maxsize=16_384)
def attribution_columns(query: str, referrer: str) -> tuple[str, ...]:
    """`attribution()` as the row's columns: referrer_host, medium, source, utm_source,
    utm_medium, utm_campaign, utm_term, utm_content (cached on its own, like ``attribution``)."""
    found = attribution.__wrapped__(query, referrer)
    return (found.referrer_host, found.medium, found.source, found.utm_source, found.utm_medium,
            found.utm_campaign, found.utm_term, found.utm_content)
