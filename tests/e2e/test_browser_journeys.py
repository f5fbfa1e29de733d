"""Whole journeys in a real browser (Debian's Chromium, driven by Playwright) against `viz up`.

A page with the real script tag → banner → choice → navigation → the analytics API reports
exactly what happened. The platform runs once for the module; every test uses a site of its
own so their numbers never mix.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, Route, sync_playwright
from viz_platform import Up

from viz._fast import TokenSigner

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Headless Chromium says "HeadlessChrome" in its user agent, which collect rightly drops as a
# bot; the journeys are a person's, so the browser presents an ordinary Chrome user agent.
PERSON_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/131.0.0.0 Safari/537.36")
# Set on the command line too: beacons sent while a page unloads leave from the browser process,
# which ignores the per-page override.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-agent={PERSON_UA}"]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    up = Up(tmp_path_factory.mktemp("e2e") / "viz-data")
    up.start()
    try:
        yield up
    finally:
        if up.proc is not None and up.proc.poll() is None:
            up.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                      headless=True)
        yield launched
        launched.close()


class Site:
    """A fresh site of the running platform, with an API token to read its numbers."""

    def __init__(self, up: Up, **fields: Any) -> None:
        self.up = up
        self.sid = "e2e-" + uuid.uuid4().hex[:8]
        self.admin = {"Authorization": f"Bearer {up.admin_token()}"}
        body = {"sid": self.sid, "tid": self.sid, "domains": ["127.0.0.1"],
                "features": {"collect": True, "cmp": True, "recs": False}, **fields}
        created = requests.post(f"{up.url('config')}/admin/sites", json=body,
                                headers=self.admin, timeout=10)
        assert created.status_code == 201, created.text
        self.api_token = requests.post(
            f"{up.url('config')}/admin/tokens", headers=self.admin, timeout=10,
            json={"name": "e2e", "site_ids": [self.sid]}).json()["token"]

    @property
    def page_url(self) -> str:
        return f"{self.up.url('config')}/demo/{self.sid}"

    def overview(self) -> dict[str, Any]:
        response = requests.get(f"{self.up.url('analytics')}/analytics/overview",
                                params={"site": self.sid},
                                headers={"Authorization": f"Bearer {self.api_token}"},
                                timeout=10)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_for(self, done: Callable[[dict[str, Any]], bool],
                 timeout_s: float = 45) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            numbers = self.overview()
            if done(numbers):
                return numbers
            assert time.monotonic() < deadline, f"numbers never arrived: {numbers}"
            time.sleep(0.25)

    def referrers(self) -> list[tuple[str, str, int, int]]:
        response = requests.get(f"{self.up.url('analytics')}/analytics/referrers",
                                params={"site": self.sid},
                                headers={"Authorization": f"Bearer {self.api_token}"},
                                timeout=10)
        assert response.status_code == 200, response.text
        return [(r["medium"], r["source"], r["pageviews"], r["hits"])
                for r in response.json()["referrers"]]

    def secret_key(self) -> bytes:
        service = {"Authorization": f"Bearer {self.up.service_token()}"}
        record = requests.get(f"{self.up.url('config')}/internal/sites/{self.sid}",
                              headers=service, timeout=10).json()
        return bytes.fromhex(record["keys"]["current"])


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(user_agent=PERSON_UA)
    # The demo page's outbound link: answer it here, the machine has no internet.
    context.route("https://example.org/**",
                  lambda route: route.fulfill(body="<p>elsewhere</p>", content_type="text/html"))
    opened = context.new_page()
    yield opened
    context.close()


def choose(page: Page, button: str) -> None:
    dialog = page.get_by_role("dialog")
    dialog.wait_for(state="visible", timeout=15_000)
    dialog.get_by_role("button", name=button, exact=True).click()
    dialog.wait_for(state="hidden", timeout=15_000)


def wait_until_identified(page: Page) -> str:
    page.wait_for_function("() => window.viz && window.viz.id && window.viz.id.bid",
                           timeout=15_000)
    return str(page.evaluate("() => window.viz.id.bid"))


def test_accept_navigate_stay_and_leave_are_reported_exactly(platform: Up, page: Page) -> None:
    site = Site(platform)
    page.goto(site.page_url)
    choose(page, "Accept")
    wait_until_identified(page)
    page.click("#spa-pricing")  # a single-page-app navigation (history.pushState)
    page.wait_for_url("**/pricing")
    for step in range(12):  # stay a while, engaged
        page.mouse.move(100 + step * 10, 200)
        page.wait_for_timeout(150)
    page.click("#exit-link")
    page.wait_for_url("https://example.org/elsewhere")

    numbers = site.wait_for(lambda n: n["pageviews"] >= 2 and n["exits"] >= 1
                            and n["active_ms"] > 0)
    time.sleep(1.5)  # anything sent twice would show up by now
    numbers = site.overview()
    assert (numbers["pageviews"], numbers["visitors"], numbers["exits"]) == (2, 1, 1)
    assert 1_000 <= numbers["active_ms"] <= 60_000
    assert numbers["hits"] == 1  # the anonymous pixel of the first page load
    # The landing came with no referrer; the SPA step is navigation within the site, which is
    # not acquisition and stays out of the referrers report.
    assert site.referrers() == [("direct", "", 1, 1)]


def test_decline_leaves_only_anonymous_hits_and_no_identifier(platform: Up, page: Page) -> None:
    site = Site(platform)
    page.goto(site.page_url)
    choose(page, "Decline")
    page.click("#spa-blog")
    page.wait_for_timeout(1500)
    cookies = {c["name"] for c in page.context.cookies()}
    assert "viz_bid" not in cookies
    assert page.evaluate("() => window.localStorage.getItem('viz_bid')") is None
    assert page.evaluate("() => !!(window.viz.id && window.viz.id.bid)") is False
    numbers = site.wait_for(lambda n: n["hits"] >= 1)
    time.sleep(1.5)
    numbers = site.overview()
    assert (numbers["hits"], numbers["pageviews"], numbers["visitors"]) == (1, 0, 0)


@pytest.mark.parametrize("kind", ["forged", "expired"])
def test_a_rejected_token_is_refreshed_and_the_events_still_count_once(
        platform: Up, page: Page, kind: str) -> None:
    site = Site(platform)
    key = site.secret_key()
    tampered: list[int] = []

    def tamper(route: Route) -> None:
        request = route.request
        if request.method != "POST" or tampered:
            route.continue_()
            return
        body = json.loads(request.post_data or "{}")
        if kind == "forged":
            body["token"] = "0" * 64
        else:  # genuine, but from twenty minutes ago
            body["token"] = TokenSigner([key]).issue(body["bid"], site.sid, time.time() - 1200)
        tampered.append(1)
        route.continue_(post_data=json.dumps(body))

    page.route(f"{platform.url('collect')}/collect*", tamper)
    page.goto(site.page_url)
    choose(page, "Accept")
    wait_until_identified(page)
    page.wait_for_timeout(500)
    numbers = site.wait_for(lambda n: n["pageviews"] >= 1)
    time.sleep(1.5)
    assert tampered == [1]
    assert site.overview()["pageviews"] == 1 == numbers["pageviews"]


def test_the_consent_record_names_the_browser_and_survives_an_expired_token(
        platform: Up, page: Page) -> None:
    """cmp.js sends collect's token with the bid; viz-cmp's 401 makes it fetch a fresh one from
    /init and send the same decision again, which is then recorded for that browser."""
    site = Site(platform)
    key = site.secret_key()
    consent_url = f"{platform.url('cmp')}/cmp/consent"
    sent: list[dict[str, Any]] = []
    answers: list[int] = []

    def expire_first(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        sent.append(body)
        if len(sent) == 1 and body.get("bid"):  # genuine, but from twenty minutes ago
            body["token"] = TokenSigner([key]).issue(body["bid"], site.sid, time.time() - 1200)
            route.continue_(post_data=json.dumps(body))
            return
        route.continue_()

    page.route(f"{consent_url}*", expire_first)
    page.on("response", lambda r: answers.append(r.status) if r.url == consent_url else None)
    page.goto(site.page_url)
    with page.expect_response(lambda r: r.url == consent_url and r.status == 200,
                              timeout=20_000):
        choose(page, "Accept")
    bid = wait_until_identified(page)
    assert answers == [401, 200]
    assert [(b.get("bid"), b["tier"]) for b in sent] == [(bid, 1), (bid, 1)]
    assert all(len(b["token"]) == 64 for b in sent)
    assert sent[1]["token"] == page.evaluate("() => window.viz.id.token")
    status = requests.get(f"{platform.url('cmp')}/cmp/status",
                          params={"sid": site.sid, "bid": bid}, timeout=10).json()
    assert (status["tier"], status["source"]) == (1, "record")


def test_a_link_to_a_sister_domain_keeps_the_browser_id_once_collect_verified_it(
        platform: Up, page: Page) -> None:
    """Two sites of one tenant on two hosts (127.0.0.1 and localhost). A click from one to the
    other carries the BID in a linker; the destination hands it to /init, which adopts it only
    after checking the token with the source site's key."""
    source = Site(platform)
    destination = Site(platform, tid=source.sid, domains=["localhost"])
    target = destination.page_url.replace("127.0.0.1", "localhost")
    page.goto(source.page_url)
    choose(page, "Accept")
    bid = wait_until_identified(page)
    # With collect first-party on each domain (the recommended deployment) the destination
    # never sees the source's collect cookie: nothing but the linker carries the BID over.
    page.context.clear_cookies()
    page.evaluate("""u => {
        var a = document.createElement('a');
        a.id = 'sister'; a.href = u; a.textContent = 'our other site';
        document.body.appendChild(a);
    }""", target)
    inits: list[str] = []
    page.on("request", lambda r: inits.append(r.url) if "/init?" in r.url else None)
    page.click("#sister")
    page.wait_for_url(lambda url: url.startswith(target))
    choose(page, "Accept")
    assert wait_until_identified(page) == bid
    assert page.url == target  # the linker left the address bar
    [init] = inits
    assert f"&lk={bid}." in init and "&bid=" not in init
    numbers = destination.wait_for(lambda n: n["pageviews"] >= 1)
    assert (numbers["pageviews"], numbers["visitors"]) == (1, 1)


def test_a_banner_full_of_xss_payloads_renders_inert(platform: Up, page: Page) -> None:
    payloads = {
        "title": '<img src=x onerror="window.__xss=1">',
        "text": "<script>window.__xss=2</script></script><b>bold?</b>",
        "accept_label": '"><svg onload="window.__xss=3">',
        "decline_label": "Decline</button><iframe src=javascript:window.__xss=4>",
    }
    site = Site(platform, cmp_config=payloads)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(site.page_url)
    dialog = page.get_by_role("dialog")
    dialog.wait_for(state="visible", timeout=15_000)
    text = dialog.inner_text()
    for value in payloads.values():
        assert value.split("<")[0] in text
    assert '<img src=x onerror="window.__xss=1">' in text  # shown literally, as text
    assert dialog.locator("img, svg, iframe, script, b").count() == 0
    page.wait_for_timeout(500)
    assert page.evaluate("() => window.__xss") is None
    assert dialogs == []
