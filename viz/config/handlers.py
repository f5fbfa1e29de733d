"""HTTP handlers of viz-config: decode the request, call the store once, answer JSON.

Errors are raised (``HttpError`` subclasses) and rendered by the base app's error middleware;
bearer authentication is a middleware on the admin and internal sub-applications.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from viz.common.consent_cookie import BID_RE
from viz.common.settings import Secret
from viz.common.web import ServiceUnavailable, Unauthorized, json_error
from viz.config import models, tags
from viz.config.store import ConfigStore

STORE_KEY = web.AppKey("viz_config_store", ConfigStore)
TRACKER_KEY = web.AppKey("viz_config_tracker", tags.TrackerBuild)
PUBLIC_URLS_KEY = web.AppKey("viz_config_public_urls", dict)
OPENAPI_KEY = web.AppKey("viz_config_openapi", bytes)
DEMO_PAGE_KEY = web.AppKey("viz_config_demo_page", str)

# Admin and internal answers carry configuration (and, internally, keys): never cache them.
_NO_STORE = {"Cache-Control": "no-store"}


def _store(request: web.Request) -> ConfigStore:
    return request.config_dict[STORE_KEY]


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers={**_NO_STORE, **(headers or {})})


def bearer_auth(secret: Secret, *, realm: str, what: str) -> Any:
    """A middleware admitting only ``Authorization: Bearer <secret>`` (constant-time compare)."""

    def refuse(message: str, error: str | None) -> web.Response:
        response = json_error(Unauthorized(message))
        challenge = f'Bearer realm="{realm}"'
        if error:
            challenge += f', error="{error}"'
        response.headers["WWW-Authenticate"] = challenge
        return response

    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        header = request.headers.get("Authorization")
        if header is None:
            return refuse(f"missing Authorization header; send 'Bearer <{what}>'", None)
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return refuse(f"the Authorization header must be 'Bearer <{what}>'", "invalid_request")
        # Headers arrive surrogate-escaped; compare the bytes that were sent.
        if not secret.matches(token.strip().encode("utf-8", "surrogateescape")):
            return refuse(f"invalid {what}", "invalid_token")
        return await handler(request)

    return auth


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_KEY], content_type="application/yaml")


# --- /admin ---------------------------------------------------------------------------------


async def list_sites(request: web.Request) -> web.Response:
    sites = await _store(request).list_sites(models.parse_tid_filter(request))
    return _json({"sites": [site.to_json() for site in sites]})


async def create_site(request: web.Request) -> web.Response:
    new = models.parse_new_site(await models.read_json(request))
    site = await _store(request).create_site(new)
    return _json(site.to_json(), status=201, headers={"Location": f"/admin/sites/{site.sid}"})


async def get_site(request: web.Request) -> web.Response:
    site = await _store(request).get_site(models.path_sid(request))
    return _json(site.to_json())


async def update_site(request: web.Request) -> web.Response:
    sid = models.path_sid(request)
    patch = models.parse_site_patch(await models.read_json(request))
    site = await _store(request).update_site(sid, patch)
    return _json(site.to_json())


async def delete_site(request: web.Request) -> web.Response:
    await _store(request).delete_site(models.path_sid(request))
    return web.Response(status=204, headers=_NO_STORE)


async def rotate_key(request: web.Request) -> web.Response:
    site = await _store(request).rotate_key(models.path_sid(request))
    return _json(site.to_json())


async def list_tenants(request: web.Request) -> web.Response:
    tenants = await _store(request).list_tenants()
    return _json({"tenants": [tenant.to_json() for tenant in tenants]})


async def create_tenant(request: web.Request) -> web.Response:
    tenant = await _store(request).create_tenant(
        models.parse_new_tenant(await models.read_json(request)))
    return _json(tenant.to_json(), status=201)


async def list_tokens(request: web.Request) -> web.Response:
    tokens = await _store(request).list_tokens()
    return _json({"tokens": [token.to_json() for token in tokens]})


async def create_token(request: web.Request) -> web.Response:
    token, plain = await _store(request).create_token(
        models.parse_new_token(await models.read_json(request)))
    # The only time the plain token is ever shown.
    return _json({**token.to_json(), "token": plain}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    await _store(request).revoke_token(models.path_token_id(request))
    return web.Response(status=204, headers=_NO_STORE)


async def export_consent(request: web.Request) -> web.Response:
    """A visitor's consent records and ledger history (data-subject access request)."""
    bid = request.match_info["bid"]
    if not BID_RE.fullmatch(bid):
        raise models.InvalidField("bid", "must be a browser id: 22 characters of A-Z, a-z, "
                                         "0-9, '_' and '-'")
    export = await _store(request).export_consent(bid, models.parse_tid_filter(request))
    return _json(export)


# --- /internal ------------------------------------------------------------------------------


async def internal_site(request: web.Request) -> web.Response:
    try:
        record = await _store(request).get_site_record(models.path_sid(request))
    except models.SiteNotFound as exc:
        # A distinct code: the SiteDirectory caches "no such site" only for this answer, never
        # for a 404 from a wrong URL or a config build without this route.
        raise models.SiteNotFound.internal(exc) from None
    return _json(record.to_wire())


async def introspect_token(request: web.Request) -> web.Response:
    """Token introspection for viz-analytics (in the spirit of RFC 7662): scope or 404."""
    token = models.parse_introspection(await models.read_json(request))
    scope = await _store(request).lookup_token(token)
    if scope is None:
        raise models.TokenNotFound.unknown()
    return _json({"token_id": scope.token_id, "sites": sorted(scope.site_ids)})


# --- tags: the config script and the domain bundles -----------------------------------------

_SCRIPT_TYPE = "application/javascript; charset=utf-8"
_CONFIG_SCRIPT_CACHE = "public, max-age=300"  # a site change reaches pages within 5 minutes
_IMMUTABLE = "public, max-age=31536000, immutable"


def _tracker(request: web.Request) -> tags.TrackerBuild:
    build: tags.TrackerBuild | None = request.app.get(TRACKER_KEY)
    if build is None:
        raise ServiceUnavailable("the tracker build is missing on this server")
    return build


def _javascript(request: web.Request, rendered: tags.Rendered, *, cache: str,
                etag: str | None = None) -> web.Response:
    headers = {"Cache-Control": cache, "Vary": "Accept-Encoding",
               "X-Content-Type-Options": "nosniff"}
    body = rendered.body
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        body = rendered.gzipped
        headers["Content-Encoding"] = "gzip"
        etag = f"{etag}.gz" if etag else None
    if etag:
        headers["ETag"] = f'"{etag}"'
    return web.Response(body=body, headers=headers, content_type="application/javascript",
                        charset="utf-8")


def _unknown_script(sid: str) -> web.Response:
    # A script tag gets a script: a comment saying why, instead of a JSON error.
    return web.Response(status=404, text=f"/* viz: no site {sid!r} */\n",
                        content_type="application/javascript",
                        headers={"Cache-Control": "public, max-age=60"})


async def config_script(request: web.Request) -> web.Response:
    """``GET /viz/{sid}.js``: ``window.__VIZ_CFG`` (public values only) + the boot code."""
    build = _tracker(request)
    sid = request.match_info["sid"]
    store = _store(request)
    try:
        site = await store.get_site(sid)
    except models.SiteNotFound:
        return _unknown_script(sid)
    urls: dict[str, str] = request.app[PUBLIC_URLS_KEY]
    cfg = tags.public_config(
        sid=site.sid, tid=site.tid, site_version=site.version, features=site.features,
        cmp_config=site.cmp_config, recs_config=site.recs_config,
        tenant_domains=await store.tenant_domains(site.tid),
        urls=urls, build=build)
    return _javascript(request, tags.config_script(cfg, build), cache=_CONFIG_SCRIPT_CACHE)


async def bundle(request: web.Request) -> web.Response:
    """``GET /b/{version}/{sid}.js`` (legacy) and ``.modern.js``: immutable, strong ETag."""
    build = _tracker(request)
    sid, flavour = request.match_info["sid"], request.match_info.get("flavour") or "legacy"
    flavour = "modern" if flavour == ".modern" else "legacy"
    try:
        site = await _store(request).get_site(sid)
    except models.SiteNotFound:
        return _unknown_script(sid)
    current = build.bundle_version(site.version)
    suffix = ".modern.js" if flavour == "modern" else ".js"
    if request.match_info["version"] != current:
        # An old page (or a cache) asks for a previous version: send it to the current one.
        raise web.HTTPFound(f"/b/{current}/{sid}{suffix}",
                            headers={"Cache-Control": "public, max-age=60"})
    etag = f"{current}.{flavour}"
    if request.headers.get("If-None-Match", "").strip() in (f'"{etag}"', f'"{etag}.gz"', "*"):
        return web.Response(status=304, headers={"ETag": request.headers["If-None-Match"].strip(),
                                                 "Cache-Control": _IMMUTABLE,
                                                 "Vary": "Accept-Encoding"})
    return _javascript(request, build.bundle(flavour, site.features), cache=_IMMUTABLE,
                       etag=etag)


async def demo_page(request: web.Request) -> web.Response:
    """``GET /demo/{sid}[/…]`` (``viz up`` only): a page carrying the site's real script tag."""
    sid = request.match_info["sid"]
    await _store(request).get_site(sid)  # 404 for an unknown site
    html = request.app[DEMO_PAGE_KEY].replace("__SID__", sid)  # sid is [A-Za-z0-9_-] only
    return web.Response(text=html, content_type="text/html", headers=_NO_STORE)
