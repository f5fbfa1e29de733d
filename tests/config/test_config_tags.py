"""The script tag's config script and the immutable domain bundles served by viz-config."""

from __future__ import annotations

import gzip
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient
from config_support import ADMIN, SERVICE, create_site, make_settings

from viz.common.clock import ManualClock
from viz.config.app import create_app

TRACKER = Path(__file__).parents[2] / "tracker" / "dist"
XSS = '</script><script>alert(1)</script>\u2028'


async def _cfg(client: TestClient, sid: str) -> dict:
    response = await client.get(f"/viz/{sid}.js")
    assert response.status == 200
    text = await response.text()
    prefix, _, rest = text.partition("window.__VIZ_CFG=")
    assert prefix == ""
    return json.loads(rest.partition(";\n")[0])


async def test_config_script_carries_public_config_and_boot_code_never_the_secret(
        client: TestClient) -> None:
    await create_site(client, "news-main", cmp_config={"title": XSS},
                      features={"collect": True, "cmp": True, "recs": True})
    await create_site(client, "news-sport", domains=["sport.example"])
    response = await client.get("/viz/news-main.js")
    assert response.status == 200
    assert response.content_type == "application/javascript"
    assert response.headers["Cache-Control"] == "public, max-age=300"
    text = await response.text()
    assert text.endswith((TRACKER / "viz.min.js").read_text())
    # Admin text cannot close the script element or break the line.
    assert "</script>" not in text and "\u2028" not in text

    cfg = await _cfg(client, "news-main")
    assert cfg["sid"] == "news-main" and cfg["tid"] == "news"
    assert cfg["cmp_config"]["title"] == XSS
    assert cfg["features"] == {"collect": True, "cmp": True, "recs": True}
    assert cfg["tenant_domains"] == ["news.example", "sport.example"]
    assert set(cfg["urls"]) == {"collect", "config", "cmp", "recs"}
    assert cfg["bundle"]["legacy"].endswith(f"/b/{cfg['version']}/news-main.js")
    assert cfg["bundle"]["modern"].endswith(f"/b/{cfg['version']}/news-main.modern.js")

    record = await (await client.get("/internal/sites/news-main", headers=SERVICE)).json()
    key = record["keys"]["current"]
    assert key not in text and bytes.fromhex(key).hex().upper() not in text


async def test_unknown_site_gets_a_script_comment_404(client: TestClient) -> None:
    response = await client.get("/viz/no-such-site.js")
    assert response.status == 404
    assert response.content_type == "application/javascript"
    assert "no site" in await response.text()


async def test_bundles_are_immutable_with_strong_etags_gzip_and_304(client: TestClient) -> None:
    await create_site(client, "news-main", features={"collect": True, "cmp": True, "recs": True})
    cfg = await _cfg(client, "news-main")
    path = cfg["bundle"]["legacy"].partition("://")[2].partition("/")[2]
    plain = await client.get("/" + path, headers={"Accept-Encoding": "identity"})
    assert plain.status == 200
    assert plain.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    etag = plain.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    body = await plain.read()
    assert body == (TRACKER / "cmp.min.js").read_bytes() + b"\n" + (
        TRACKER / "collect.min.js").read_bytes() + b"\n"

    zipped = await client.get("/" + path, headers={"Accept-Encoding": "gzip"},
                              auto_decompress=False)
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await zipped.read()) == body
    assert zipped.headers["ETag"] != etag  # another representation, another strong tag

    again = await client.get("/" + path, headers={"If-None-Match": etag,
                                                   "Accept-Encoding": "identity"})
    assert again.status == 304 and await again.read() == b""

    modern = await client.get("/" + path.replace(".js", ".modern.js"))
    assert (TRACKER / "recs.min.js").read_bytes() in await modern.read()


async def test_bundle_holds_only_the_enabled_modules(client: TestClient) -> None:
    await create_site(client, "cmp-only", features={"collect": False, "cmp": True, "recs": False})
    cfg = await _cfg(client, "cmp-only")
    path = cfg["bundle"]["modern"].partition("://")[2].partition("/")[2]
    body = await (await client.get("/" + path)).read()
    assert body == (TRACKER / "cmp.min.js").read_bytes() + b"\n"


async def test_a_site_change_gives_new_urls_and_old_ones_redirect(client: TestClient) -> None:
    await create_site(client, "news-main")
    old = await _cfg(client, "news-main")
    response = await client.patch("/admin/sites/news-main", json={"name": "Renamed"},
                                  headers=ADMIN)
    assert response.status == 200
    new = await _cfg(client, "news-main")
    assert new["version"] != old["version"]
    old_path = old["bundle"]["legacy"].partition("://")[2].partition("/")[2]
    stale = await client.get("/" + old_path, allow_redirects=False)
    assert stale.status == 302
    assert stale.headers["Location"] == f"/b/{new['version']}/news-main.js"
    assert (await client.get(f"/b/{new['version']}/nope-site.js")).status == 404


async def test_without_a_tracker_build_scripts_are_503_and_the_admin_api_works(
        aiohttp_client: Callable[[web.Application], Awaitable[TestClient]], config_dsn: str,
        tmp_path: Path) -> None:
    settings = make_settings(config_dsn, VIZ_CONFIG_TRACKER_DIR=str(tmp_path))
    client = await aiohttp_client(create_app(settings, clock=ManualClock()))
    await create_site(client, "news-main")
    response = await client.get("/viz/news-main.js")
    assert response.status == 503
    assert "tracker build" in (await response.json())["error"]["message"]
