"""Every answer collect gives in these scenarios is one its OpenAPI document describes."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest
import yaml

from viz.collect.errors import ALL_ERRORS, QueueFull

from .support import ORIGIN, SID, Harness, Response, get, make_site, post

pytestmark = pytest.mark.usefixtures("connection_twin")

DOC = yaml.safe_load(resources.files("viz.collect").joinpath("openapi.yaml").read_bytes())


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    target: Any = DOC
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return _resolve(target)


def check(path: str, method: str, response: Response) -> None:
    operation = DOC["paths"][path][method]
    documented = operation["responses"].get(str(response.status))
    assert documented is not None, f"{method.upper()} {path} -> {response.status} undocumented"
    documented = _resolve(documented)
    headers = {name.lower(): _resolve(spec) for name, spec in documented.get("headers", {}).items()}
    for name, spec in headers.items():
        value = response.header(name)
        if value is not None and "enum" in spec["schema"]:
            assert value in spec["schema"]["enum"], f"{name}: {value}"
    if response.status == 503:
        assert response.header("retry-after") is not None
    if response.status >= 400:
        error = response.json()["error"]
        codes = _resolve(DOC["components"]["schemas"]["Error"])["properties"]["error"]
        assert error["code"] in codes["properties"]["code"]["enum"]
    content = documented.get("content")
    if content and response.body:
        assert response.header("content-type").split(";")[0] in content
        schema = _resolve(next(iter(content.values()))["schema"])
        if schema.get("type") == "object":
            assert set(schema.get("required", ())) <= set(response.json())


def test_the_documented_error_codes_are_exactly_the_implemented_ones() -> None:
    codes = _resolve(DOC["components"]["schemas"]["Error"])["properties"]["error"]
    assert set(codes["properties"]["code"]["enum"]) == {cls.code for cls in ALL_ERRORS}


@pytest.mark.parametrize(("path", "method", "raw"), [
    ("/init", "get", get(f"/init?sid={SID}&tier=1")),
    ("/init", "get", get(f"/init?sid={SID}&tier=1&lk=not-a-linker")),
    ("/init", "get", get(f"/init?sid={SID}&tier=0")),
    ("/init", "get", get(f"/init?sid={SID}")),
    ("/init", "get", get(f"/init?sid={SID}&tier=1", origin=b"null")),
    ("/init", "get", get("/init?sid=unknown-site&tier=1")),
    ("/init", "options", b"OPTIONS /init?sid=%s HTTP/1.1\r\nOrigin: %s\r\n\r\n" % (SID.encode(), ORIGIN)),
    ("/collect", "post", post("/collect", b"{")),
    ("/collect", "post", post("/collect", b"x" * 70_000)),
    ("/collect", "options", b"OPTIONS /collect HTTP/1.1\r\n\r\n"),
    ("/hit", "get", get(f"/hit?sid={SID}&p=/")),
    ("/hit", "get", get(f"/hit?sid={SID}&p=/", origin=None)),
    ("/hit", "get", get(f"/hit?sid={SID}&p=/", ua=b"Googlebot")),
    ("/hit", "get", get(f"/hit?sid={SID}&p=/", origin=b"https://evil.example")),
    ("/healthz", "get", get("/healthz")),
    ("/readyz", "get", get("/readyz")),
    ("/metrics", "get", get("/metrics")),
])
async def test_answers_conform_to_the_document(path: str, method: str, raw: bytes) -> None:
    h = Harness(make_site())
    await h.warm()
    check(path, method, await h.connect().request(raw))


async def test_collect_answers_conform_to_the_document() -> None:
    h = Harness(make_site(), make_site("site-off", collect=False))
    await h.warm()
    await h.warm("site-off")
    for body in (h.body(2), h.body(1, token=h.token(key=b"z" * 32)), h.body(1, sid="site-off"),
                 h.body(1, sid="nobody-here")):
        check("/collect", "post", await h.connect().request(post("/collect", body)))
    token = h.token()
    h.clock.advance(3600)
    check("/collect", "post", await h.connect().request(post("/collect", h.body(1, token=token))))
    h.sink.raise_on_send = QueueFull
    check("/collect", "post", await h.connect().request(post("/collect", h.body(1))))
