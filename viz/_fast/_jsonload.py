"""Strict JSON decoding shared by the twins: `strict_loads` (stdlib) accepts exactly what
`fast_loads` (orjson when installed, else `strict_loads` itself) accepts, value for value.

Strict means RFC 8259 on UTF-8 bytes: no BOM, no NaN/Infinity, no number that overflows a double,
no lone surrogate (escaped or encoded). Integers outside int64/uint64 come back as int from the
stdlib and as float from orjson; every caller range-checks integers, so that never matters.
Nesting depth is not limited here (the two libraries differ around 1000 levels); callers reject
deep documents by rule, see `viz._fast._payload_py.MAX_DEPTH`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable

__all__ = ["DECODER", "JSON_ERRORS", "fast_loads", "strict_loads"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def _parse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("number overflows a double")
    return value


def _parse_int(text: str) -> int:
    value = int(text)
    if len(text) > 300:
        float(value)  # OverflowError exactly where a double parser would give infinity
    return value


_decoder = json.JSONDecoder(
    parse_float=_parse_float, parse_int=_parse_int, parse_constant=_parse_constant
)


def _has_surrogate(obj: object) -> bool:
    if isinstance(obj, str):
        return _SURROGATE.search(obj) is not None
    if isinstance(obj, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in obj.items())
    if isinstance(obj, list):
        return any(_has_surrogate(v) for v in obj)
    return False


def strict_loads(body: bytes) -> object:
    """Decode `body`; raise ValueError (or RecursionError) for anything that is not strict JSON."""
    text = body.decode("utf-8")  # strict: also rejects encoded surrogates
    if text.startswith("\ufeff"):
        raise ValueError("byte order mark is not allowed")
    obj = _decoder.decode(text)
    if "\\u" in text and _has_surrogate(obj):  # only escapes can smuggle a lone surrogate in
        raise ValueError("lone surrogate in string")
    return obj


fast_loads: Callable[[bytes], object]
try:
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    fast_loads = strict_loads
    DECODER = "json"
else:
    fast_loads = orjson.loads
    DECODER = "orjson"

# What a failed decode may raise: ValueError covers json, UnicodeDecodeError and orjson's errors.
JSON_ERRORS = (ValueError, RecursionError, OverflowError)
