"""Pure-Python reference for `native_block`: rows → one block of ClickHouse's Native format.

The consumer inserts with it (`raw_insert(..., fmt="Native")`) instead of clickhouse-connect's
own serialisation, which builds every column in Python. A block is

    varint(columns) varint(rows), then per column: name, type, the column's values

with strings as varint(length) + UTF-8 bytes and numbers as little-endian fixed width. Supported
column types (any other raises ValueError):

    String, LowCardinality(String)  str values; a LowCardinality column is sent as plain
                                    `String` and ClickHouse converts it on insert
                                    (input_format_native_allow_types_conversion, on by default)
    UInt8 UInt16 UInt32 UInt64 Int64  int values (bool counts as int), range-checked
    DateTime64(3[, 'tz'])           int values: milliseconds since the epoch (Int64 ticks)

Errors, the same from both twins: a row that is not a list or tuple → TypeError; a row of the
wrong length → ValueError; a str column value that is not a str → TypeError, one that is not
encodable (lone surrogate) → UnicodeEncodeError; a numeric value that is not an int →
TypeError, one outside the column's range → OverflowError.
"""

from __future__ import annotations

import re
import sys
from array import array
from collections.abc import Sequence
from typing import Any

__all__ = ["native_block", "native_type"]

_INTS = {"UInt8": "B", "UInt16": "H", "UInt32": "I", "UInt64": "Q", "Int64": "q"}
_DATETIME64_MS = re.compile(r"DateTime64\(3(, *'[^']*')?\)")


def native_type(type_name: str) -> tuple[str, str]:
    """(wire type, array typecode or "s" for strings) of a supported column type."""
    if type_name in ("String", "LowCardinality(String)"):
        return "String", "s"
    if type_name in _INTS:
        return type_name, _INTS[type_name]
    if _DATETIME64_MS.fullmatch(type_name):
        return type_name, "q"
    raise ValueError(f"unsupported column type for a Native block: {type_name!r}")


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_RANGES = {"B": (0, 2**8), "H": (0, 2**16), "I": (0, 2**32), "Q": (0, 2**64),
           "q": (-(2**63), 2**63)}


_SMALL = [bytes((n,)) for n in range(0x80)]  # varint(n) for n < 128
_encode = str.encode  # TypeError for anything but a str


def _string(value: object) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"expected str, got {type(value).__name__}")
    raw = value.encode("utf-8")
    return _varint(len(raw)) + raw


def _strings(values: list[Any]) -> list[bytes]:
    """varint(length) and UTF-8 bytes of every str in `values`, interleaved."""
    raws = [_encode(value) for value in values]
    out = [b""] * (2 * len(raws))
    out[0::2] = [_SMALL[n] if n < 0x80 else _varint(n) for n in map(len, raws)]
    out[1::2] = raws
    return out


def _check(value: object, code: str) -> None:
    """Raise what encoding `value` into a column of `code` raises; nothing when it fits."""
    if code == "s":
        _string(value)
    elif not isinstance(value, int):
        raise TypeError(f"expected int, got {type(value).__name__}")
    elif not _RANGES[code][0] <= value < _RANGES[code][1]:
        raise OverflowError(f"int out of range for array type {code!r}")


def native_block(names: Sequence[str], types: Sequence[str], rows: Sequence[Any]) -> bytes:
    """One Native block holding `rows` (each a list or tuple, one value per column).

    Checked in this order: names/types, column names, every row's shape, then the values
    row by row, left to right; the first bad one raises."""
    if len(names) != len(types):
        raise ValueError("names and types differ in length")
    specs = [native_type(t) for t in types]
    headers = [_string(name) + _string(wire) for name, (wire, _) in zip(names, specs, strict=True)]
    width = len(names)
    for row in rows:
        if type(row) is not list and type(row) is not tuple:
            raise TypeError(f"a row must be a list or tuple, not {type(row).__name__}")
        if len(row) != width:
            raise ValueError(f"a row has {len(row)} values, expected {width}")
    out = [_varint(width), _varint(len(rows))]
    try:
        for j, (_, code) in enumerate(specs):
            out.append(headers[j])
            if code == "s":
                out += _strings([row[j] for row in rows])
                continue
            column = array(code, [row[j] for row in rows])
            if sys.byteorder == "big":
                column.byteswap()
            out.append(column.tobytes())
    except (TypeError, OverflowError, UnicodeEncodeError):
        # Column by column found a bad value; report the first one in row order instead.
        for row in rows:
            for j, (_, code) in enumerate(specs):
                _check(row[j], code)
        raise
    return b"".join(out)
