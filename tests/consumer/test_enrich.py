"""Enrichment turns user agents and referrers into the columns dashboards group by."""

from __future__ import annotations

import pytest

from viz.consumer.enrich import agent, attribute

CHROME_WIN = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/131.0.0.0 Safari/537.36")
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
                 "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
SAFARI_IPAD = ("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
               "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@pytest.mark.parametrize(("ua", "browser", "os", "device", "bot"), [
    (CHROME_WIN, "Chrome", "Windows", "desktop", False),
    (SAFARI_IPHONE, "Mobile Safari", "iOS", "mobile", False),
    (SAFARI_IPAD, "Mobile Safari", "iOS", "tablet", False),
    (GOOGLEBOT, "Googlebot", "Other", "bot", True),
    ("curl/8.5.0", "curl", "Other", "bot", True),
    ("", "", "", "bot", True),
])
def test_user_agent_classification(ua: str, browser: str, os: str, device: str, bot: bool) -> None:
    parsed = agent(ua)
    assert (parsed.browser, parsed.os, parsed.device, parsed.is_bot) == (browser, os, device, bot)


@pytest.mark.parametrize(("path", "referrer", "medium", "source"), [
    ("/", "", "direct", ""),
    ("/a", "https://www.google.com/search?q=viz", "search", "Google"),
    ("/a", "https://t.co/xyz", "social", "Twitter"),
    ("/a", "https://www.tiktok.com/@someone", "social", "TikTok"),
    ("/a", "https://mail.google.com/mail/u/0", "email", "Gmail"),
    ("/a", "https://www.someblog.org/post", "referral", "someblog.org"),
    ("/a?gclid=abc", "https://www.google.com/", "paid", "Google"),
    ("/a?fbclid=abc", "", "social", "Facebook"),
    ("/a?utm_source=weekly&utm_medium=newsletter&utm_campaign=nov", "", "email", "weekly"),
    ("/a?utm_source=partner", "", "referral", "partner"),
])
def test_medium_and_source(path: str, referrer: str, medium: str, source: str) -> None:
    found = attribute(path, referrer)
    assert (found.medium, found.source) == (medium, source)


def test_navigation_within_the_site_is_internal_not_a_referral() -> None:
    # The tracker sends a referrer on the page's own host as a bare path.
    assert attribute("/b", "/a?x=1").medium == "internal"
    assert attribute("/b", "//evil.example/a").medium == "referral"
    # A campaign link inside the site still counts as the campaign.
    assert attribute("/b?utm_source=nl&utm_medium=email", "/a").medium == "email"


def test_utm_fields_are_kept_for_campaign_reports() -> None:
    found = attribute("/?utm_source=x&utm_medium=cpc&utm_campaign=spring&utm_term=shoes", "")
    assert (found.medium, found.utm_source, found.utm_campaign, found.utm_term) == (
        "paid", "x", "spring", "shoes")


def test_a_malformed_referrer_counts_as_direct_not_a_crash() -> None:
    assert attribute("/", "http://[::1").medium == "direct"


def test_the_column_tuples_are_the_dataclasses_in_column_order() -> None:
    from viz.consumer.enrich import agent_columns, attribution, attribution_columns
    from viz.consumer.writer import COLUMNS

    found = agent(SAFARI_IPAD)
    assert agent_columns(SAFARI_IPAD) == (found.browser, found.browser_version, found.os,
                                          found.device, 0)
    assert agent_columns(GOOGLEBOT)[4] == 1
    query, referrer = "utm_source=nl&utm_medium=email&gclid=1", "https://www.google.com/"
    columns = dict(zip(COLUMNS[12:20], attribution_columns(query, referrer), strict=True))
    found_attr = attribution(query, referrer)
    assert columns == {name: getattr(found_attr, name) for name in columns}
    assert COLUMNS[20:25] == ("browser", "browser_version", "os", "device", "is_bot")
