"""Both twins of each viz._fast concern, for parametrized tests (ids "py" and "c")."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from viz._fast._select import NO_EXTENSIONS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SKIP_C = pytest.mark.skipif(NO_EXTENSIONS, reason="VIZ_NO_EXTENSIONS=1")
KINDS = [pytest.param("py", id="py"), pytest.param("c", id="c", marks=SKIP_C)]


def load(concern: str, kind: str):
    return importlib.import_module(f"viz._fast._{concern}_{kind}")


def both(concern: str):
    """(pure, compiled) modules; only for tests marked with SKIP_C."""
    return load(concern, "py"), load(concern, "c")


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text("utf-8"))


def vector_body(case: dict) -> bytes:
    """A payload vector's body: UTF-8 `body` (or `body_hex`) plus `pad_spaces` spaces."""
    if "body_hex" in case:
        body = bytes.fromhex(case["body_hex"])
    else:
        body = case["body"].encode("utf-8")
    return body + b" " * case.get("pad_spaces", 0)


def event_fields(ev) -> dict:
    return {k: getattr(ev, k) for k in ("id", "t", "p", "r", "ts", "ms", "h", "n", "title")}


ENVELOPE_FIELDS = (
    "v", "ts", "eid", "sid", "tid", "bid", "id", "t", "p", "r", "cts", "ms", "h", "n", "title",
    "ua", "tier",
)  # fmt: skip


def envelope_fields(env) -> dict:
    return {k: getattr(env, k) for k in ENVELOPE_FIELDS}
