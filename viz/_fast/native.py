"""Rows → one block of ClickHouse's Native format, for `raw_insert(..., fmt="Native")`.

Supported column types and the errors are documented in `viz._fast._native_py`.
"""

from viz._fast._select import load

_impl, COMPILED = load("native")
native_block = _impl.native_block
native_type = _impl.native_type

__all__ = ["COMPILED", "native_block", "native_type"]
