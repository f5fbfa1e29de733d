"""One HTTP request as collect sees it: method, target, the few headers it reads, the body.

The protocol fills a :class:`Request` from httptools callbacks; every other header is skipped
without being stored, so a request costs one small object and no header dict.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

# Header name (as sent, Title-Case or lower-case) -> Request slot. Other spellings fall back to
# one ``.lower()``; headers not listed here are ignored. The short headers every browser sends
# but collect never reads map to "" (known, skipped), so they cost one lookup, not a lower().
_CAPTURED = ("origin", "referer", "user-agent", "cookie", "content-length", "content-type",
             "sec-gpc", "expect", "connection", "x-forwarded-for", "x-real-ip")
_SKIPPED = ("host", "accept", "accept-encoding", "accept-language", "cache-control", "pragma",
            "priority", "dnt", "te", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest",
            "sec-ch-ua", "upgrade-insecure-requests", "keep-alive")
SLOT_BY_NAME: dict[bytes, str] = {}
"""Header name -> :class:`Request` slot, or "" for a known header that is skipped;
:func:`header_slot` is the rule for reading it."""
for _name in _CAPTURED + _SKIPPED:
    _slot = _name.replace("-", "_") if _name in _CAPTURED else ""
    SLOT_BY_NAME[_name.encode()] = _slot
    SLOT_BY_NAME["-".join(p.capitalize() for p in _name.split("-")).encode()] = _slot
    SLOT_BY_NAME[_name.upper().encode()] = _slot
SLOT_BY_NAME[b"Sec-Gpc"] = "sec_gpc"
SLOT_BY_NAME[b"Sec-GPC"] = "sec_gpc"
SLOT_BY_NAME[b"User-agent"] = "user_agent"
SLOT_BY_NAME[b"X-Real-IP"] = "x_real_ip"


def header_slot(name: bytes) -> str | None:
    """The :class:`Request` attribute a header is kept in, or ``None`` to skip it."""
    slot = SLOT_BY_NAME.get(name)
    if slot is None and len(name) <= 14:
        slot = SLOT_BY_NAME.get(name.lower())
    return slot or None


class Request:
    """Filled by the protocol, read by the handler; never mutated after dispatch."""

    __slots__ = ("method", "target", "origin", "referer", "user_agent", "cookie",
                 "content_length", "content_type", "sec_gpc", "expect", "connection",
                 "x_forwarded_for", "x_real_ip", "peer", "body", "keep_alive", "http_10")

    def __init__(self) -> None:
        self.method = b""
        self.target = b""
        self.origin: bytes | None = None
        self.referer: bytes | None = None
        self.user_agent: bytes | None = None
        self.cookie: bytes | None = None
        self.content_length: bytes | None = None
        self.content_type: bytes | None = None
        self.sec_gpc: bytes | None = None
        self.expect: bytes | None = None
        self.connection: bytes | None = None
        self.x_forwarded_for: bytes | None = None
        self.x_real_ip: bytes | None = None
        self.peer = ""
        """The socket peer's address (host only), set by the protocol."""
        self.body = b""
        self.keep_alive = True
        self.http_10 = False

    @property
    def path(self) -> bytes:
        q = self.target.find(b"?")
        return self.target if q < 0 else self.target[:q]

    @property
    def query(self) -> bytes:
        q = self.target.find(b"?")
        return b"" if q < 0 else self.target[q + 1:]


def parse_query(query: bytes, *, max_fields: int = 16) -> dict[str, str]:
    """``a=1&b=x%20y`` -> ``{"a": "1", "b": "x y"}``; the first value of a repeated key wins.

    Raises ``ValueError`` for more than ``max_fields`` fields or bytes that are not UTF-8.
    """
    out: dict[str, str] = {}
    if not query:
        return out
    text = query.decode("utf-8")  # UnicodeDecodeError is a ValueError
    parts = text.split("&")
    if len(parts) > max_fields:
        raise ValueError("too many query fields")
    for part in parts:
        if not part:
            continue
        key, _, value = part.partition("=")
        if "%" in key or "+" in key:
            key = unquote_plus(key, errors="strict")
        if "%" in value or "+" in value:
            value = unquote_plus(value, errors="strict")
        out.setdefault(key, value)
    return out


def cookie_value(header: bytes | None, name: bytes) -> bytes | None:
    """The value of cookie ``name`` in a ``Cookie`` header, or ``None``."""
    if not header:
        return None
    prefix = name + b"="
    for part in header.split(b";"):
        part = part.strip()
        if part.startswith(prefix):
            return part[len(prefix):].strip(b'"')
    return None


def url_host(value: bytes | None) -> str | None:
    """The lower-case host of an ``http(s)://`` Origin or Referer value, or ``None``.

    ``None`` for anything else: ``null``, ``file://``, a missing scheme, userinfo tricks
    (``https://site.example@evil.example``), an empty host or non-ASCII bytes.
    """
    if not value:
        return None
    if value.startswith(b"https://"):
        rest = value[8:]
    elif value.startswith(b"http://"):
        rest = value[7:]
    else:
        return None
    end = len(rest)
    for sep in (b"/", b"?", b"#"):
        i = rest.find(sep)
        if 0 <= i < end:
            end = i
    authority = rest[:end]
    if b"@" in authority or b"\\" in authority:
        return None
    if authority.startswith(b"["):  # IPv6 literal: never one of a site's domains
        return None
    host = authority.rpartition(b":")[0] if b":" in authority else authority
    if not host or not host.isascii():
        return None
    return host.decode("ascii").lower().rstrip(".")
