"""What every aiohttp service shares: JSON errors, the ops endpoints and request metrics.

Errors map to HTTP in exactly one place, :func:`error_middleware`: handlers raise
:class:`HttpError` (or let a domain error that subclasses it escape) and never build error
responses themselves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from viz.common.errors import VizError

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], Awaitable[None]]
"""Raises (any exception) when a dependency is not reachable; must finish within a second or two."""


class HttpError(VizError):
    """An error with the status, machine-readable code and message a client sees."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 details: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.details = dict(details or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        error.update(self.details)
        return {"error": error}


class InvalidField(HttpError):
    """A request field has the wrong type or value; ``field`` names it (``domains[2]``)."""

    status = 400
    code = "invalid_field"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", details={"field": field})


class MalformedJson(HttpError):
    status = 400
    code = "malformed_json"


class UnsupportedMediaType(HttpError):
    status = 415
    code = "unsupported_media_type"


def _reject_constant(name: str) -> Any:
    # PostgreSQL's jsonb has no NaN or Infinity; refuse them here instead of failing on insert.
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: web.Request,
                    content_types: tuple[str, ...] = ("application/json",)) -> Any:
    """The request body decoded as strict JSON (no NaN/Infinity), or a 415/400 saying why not.

    The size is bounded by the application's ``client_max_size`` (413 beyond).
    """
    if request.content_type not in content_types:
        raise UnsupportedMediaType(f"send the body as {' or '.join(content_types)}, not "
                                   f"{request.content_type or 'nothing'}")
    raw = await request.read()
    if not raw:
        raise MalformedJson("the request body is empty; expected a JSON object")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        text = str(exc) or type(exc).__name__
        text = text if len(text) <= 120 else text[:117] + "..."
        raise MalformedJson(f"the request body is not valid JSON: {text}") from None


class NotFound(HttpError):
    status = 404
    code = "not_found"


class Conflict(HttpError):
    status = 409
    code = "conflict"


class Unauthorized(HttpError):
    status = 401
    code = "unauthorized"


class ServiceUnavailable(HttpError):
    status = 503
    code = "unavailable"
    retryable = True


METRICS_KEY = web.AppKey("viz_metrics", CollectorRegistry)
READY_CHECKS_KEY = web.AppKey("viz_ready_checks", dict)  # name -> ReadyCheck


def json_error(err: HttpError) -> web.Response:
    headers = {"Retry-After": "1"} if err.status == 503 else {}
    headers.update(getattr(err, "headers", {}))
    return web.json_response(err.body(), status=err.status, headers=headers)


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def make_error_middleware(registry: CollectorRegistry) -> Any:
    requests = Counter("viz_http_requests_total", "HTTP requests by route and status",
                       ["method", "route", "status"], registry=registry)
    latency = Histogram("viz_http_request_duration_seconds", "HTTP request latency by route",
                        ["route"], registry=registry,
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))

    @web.middleware
    async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.perf_counter()
        route = _route_label(request)
        try:
            response = await handler(request)
        except HttpError as err:
            response = json_error(err)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            reason = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
            kept = {k: v for k, v in exc.headers.items() if k in ("Allow", "WWW-Authenticate")}
            response = json_error(HttpError(exc.reason, status=exc.status,
                                            code=reason.get(exc.status, "http_error"),
                                            headers=kept))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unhandled error on %s %s", request.method, route)
            response = json_error(HttpError("internal error", status=500, code="internal"))
        requests.labels(request.method, route, str(response.status)).inc()
        latency.labels(route).observe(time.perf_counter() - started)
        return response

    return error_middleware


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, ReadyCheck] = request.app[READY_CHECKS_KEY]
    results: dict[str, str] = {}
    ok = True
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check(), timeout=2.0)
            results[name] = "ok"
        except Exception as exc:  # any failure means "not ready", never a 500
            ok = False
            results[name] = f"unavailable: {type(exc).__name__}"
    return web.json_response({"status": "ok" if ok else "unavailable", "checks": results},
                             status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_base_app(*, client_max_size: int = 1024 * 1024) -> web.Application:
    """An application with the error middleware, its own metrics registry and ops routes.

    Services add their ready checks to ``app[READY_CHECKS_KEY]`` and their own metrics to
    ``app[METRICS_KEY]``.
    """
    registry = CollectorRegistry(auto_describe=True)
    app = web.Application(middlewares=[make_error_middleware(registry)],
                          client_max_size=client_max_size)
    app[METRICS_KEY] = registry
    app[READY_CHECKS_KEY] = {}
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve_app(app: web.Application, *, host: str, port: int, name: str,
                    stop: asyncio.Event | None = None, shutdown_timeout_s: float = 10.0) -> None:
    """Serve ``app`` until SIGTERM/SIGINT (or ``stop``), then finish in-flight requests."""
    import signal

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout_s, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("%s listening on http://%s:%d", name, host, port)
        await stop.wait()
        log.info("%s stopping", name)
    finally:
        await runner.cleanup()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
