"""What the admin API accepts and returns: request decoding, validation and response shapes.

Every check here raises an :class:`~viz.common.web.HttpError` carrying the offending field, so a
client learns in one response what to fix. The limits mirror ``docs/api/config.openapi.yaml``.
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from viz.common.sites import DEFAULT_FEATURES, FEATURES, SID_RE, TID_RE
from viz.common.web import (  # noqa: F401 - re-exported: the handlers use models.*
    HttpError,
    InvalidField,
    MalformedJson,
    NotFound,
    UnsupportedMediaType,
    read_json,
)

MAX_BODY_BYTES = 256 * 1024
MAX_NAME_CHARS = 200
MAX_DOMAINS = 100
MAX_TOKEN_SITES = 100
MAX_CONFIG_BYTES = 16 * 1024
MAX_CONFIG_DEPTH = 16

# A DNS label in its ASCII (A-label) form; IDNA input is converted to it first.
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


class SiteNotFound(NotFound):
    def __init__(self, sid: str) -> None:
        super().__init__(f"no site with sid {sid!r}")

    @classmethod
    def internal(cls, exc: SiteNotFound) -> NotFound:
        return NotFound(exc.message, code="unknown_site")


class TokenNotFound(NotFound):
    def __init__(self, token_id: str) -> None:
        super().__init__(f"no API token with id {token_id!r}")

    @classmethod
    def unknown(cls) -> NotFound:
        return NotFound("unknown or revoked API token", code="unknown_token")


# --- responses ------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class Tenant:
    tid: str
    name: str
    created_at: datetime
    site_count: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"tid": self.tid, "name": self.name, "site_count": self.site_count,
                "created_at": _iso(self.created_at)}


@dataclass(frozen=True)
class Site:
    """A site as admins see it: everything except its keys."""

    sid: str
    tid: str
    name: str
    domains: tuple[str, ...]
    features: Mapping[str, bool]
    cmp_config: Mapping[str, Any]
    recs_config: Mapping[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime
    previous_key_expires_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "tid": self.tid,
            "name": self.name,
            "domains": list(self.domains),
            "features": dict(self.features),
            "cmp_config": dict(self.cmp_config),
            "recs_config": dict(self.recs_config),
            "version": self.version,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "previous_key_expires_at": _iso(self.previous_key_expires_at),
        }


@dataclass(frozen=True)
class ApiToken:
    """An API token's metadata; the plain token exists only in the response that created it."""

    id: str
    name: str
    prefix: str
    site_ids: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "site_ids": list(self.site_ids),
            "created_at": _iso(self.created_at),
            "last_used_at": _iso(self.last_used_at),
            "revoked_at": _iso(self.revoked_at),
        }


@dataclass(frozen=True)
class TokenScope:
    """What a presented API token may read (returned by ``ConfigStore.lookup_token``)."""

    token_id: str
    site_ids: frozenset[str]

    def allows(self, sid: str) -> bool:
        return sid in self.site_ids


# --- requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewSite:
    sid: str
    tid: str
    name: str
    domains: tuple[str, ...] = ()
    features: Mapping[str, bool] = field(default_factory=lambda: dict(DEFAULT_FEATURES))
    cmp_config: Mapping[str, Any] = field(default_factory=dict)
    recs_config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SitePatch:
    """Fields left ``None`` stay as they are; ``features`` is merged key by key."""

    name: str | None = None
    domains: tuple[str, ...] | None = None
    features: Mapping[str, bool] | None = None
    cmp_config: Mapping[str, Any] | None = None
    recs_config: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class NewTenant:
    tid: str
    name: str


@dataclass(frozen=True)
class NewToken:
    name: str
    site_ids: tuple[str, ...]


def _object(body: Any, allowed: tuple[str, ...], *, read_only: tuple[str, ...] = ()) -> dict:
    if not isinstance(body, dict):
        raise InvalidField("$", "the request body must be a JSON object")
    for key in body:
        if key in read_only:
            raise InvalidField(key, "cannot be changed")
        if key not in allowed:
            raise InvalidField(key, f"unknown field; allowed: {', '.join(allowed)}")
    return body


def _check_text(value: str, name: str) -> str:
    # PostgreSQL text cannot hold NUL, and lone surrogates cannot be encoded as UTF-8.
    if "\x00" in value:
        raise InvalidField(name, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidField(name, "must be valid Unicode text") from None
    return value


def _name(value: Any, name: str = "name") -> str:
    if not isinstance(value, str):
        raise InvalidField(name, "must be a string")
    if not value.strip() or len(value) > MAX_NAME_CHARS:
        raise InvalidField(name, f"must be 1 to {MAX_NAME_CHARS} characters and not blank")
    return _check_text(value, name)


def parse_sid(value: Any, name: str = "sid") -> str:
    if not isinstance(value, str) or not SID_RE.fullmatch(value):
        raise InvalidField(name, "must be 3 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")
    return value


def parse_tid(value: Any, name: str = "tid") -> str:
    if not isinstance(value, str) or not TID_RE.fullmatch(value):
        raise InvalidField(name, "must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")
    return value


def path_sid(request: web.Request) -> str:
    """The ``{sid}`` of the URL; a sid that cannot exist is simply not found."""
    sid = request.match_info["sid"]
    if not SID_RE.fullmatch(sid):
        raise SiteNotFound(sid)
    return sid


def path_token_id(request: web.Request) -> str:
    token_id = request.match_info["id"]
    try:
        return str(uuid.UUID(token_id))
    except ValueError:
        raise TokenNotFound(token_id) from None


def parse_domain(value: Any, name: str) -> str:
    """A hostname in lowercase ASCII (IDNA names converted), ``localhost`` or an IPv4 address."""
    message = "must be a hostname such as example.com (no scheme, port or path)"
    if not isinstance(value, str) or not value or len(value) > 253:
        raise InvalidField(name, message)
    host = value.lower()
    try:
        ipaddress.IPv4Address(host)
        return host
    except ValueError:
        pass
    if host == "localhost":
        return host
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidField(name, message) from None
    labels = host.split(".")
    if (len(host) > 253 or len(labels) < 2 or labels[-1].isdigit()
            or not all(_LABEL_RE.fullmatch(label) for label in labels)):
        raise InvalidField(name, message)
    return host


def _domains(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InvalidField("domains", "must be a list of hostnames")
    if len(value) > MAX_DOMAINS:
        raise InvalidField("domains", f"at most {MAX_DOMAINS} domains")
    parsed = [parse_domain(item, f"domains[{i}]") for i, item in enumerate(value)]
    return tuple(dict.fromkeys(parsed))  # duplicates dropped, order kept


def _features(value: Any) -> dict[str, bool]:
    if not isinstance(value, dict):
        raise InvalidField("features", f"must be an object with booleans {', '.join(FEATURES)}")
    for key, flag in value.items():
        if key not in FEATURES:
            raise InvalidField(f"features.{key}", f"unknown feature; known: {', '.join(FEATURES)}")
        if not isinstance(flag, bool):
            raise InvalidField(f"features.{key}", "must be true or false")
    return dict(value)


def _check_json_text(value: Any, name: str, depth: int = 0) -> None:
    if depth > MAX_CONFIG_DEPTH:
        raise InvalidField(name, f"nested deeper than {MAX_CONFIG_DEPTH} levels")
    if isinstance(value, str):
        _check_text(value, name)
    elif isinstance(value, list):
        for item in value:
            _check_json_text(item, name, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, name)
            _check_json_text(item, name, depth + 1)


def _json_object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidField(name, "must be a JSON object")
    _check_json_text(value, name)
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_CONFIG_BYTES:
        raise InvalidField(name, f"is {size} bytes as JSON; the limit is {MAX_CONFIG_BYTES}")
    return value


_SITE_FIELDS = ("sid", "tid", "name", "domains", "features", "cmp_config", "recs_config")
_PATCH_FIELDS = ("name", "domains", "features", "cmp_config", "recs_config")


def parse_new_site(body: Any) -> NewSite:
    data = _object(body, _SITE_FIELDS)
    for required in ("sid", "tid"):
        if required not in data:
            raise InvalidField(required, "is required")
    sid = parse_sid(data["sid"])
    return NewSite(
        sid=sid,
        tid=parse_tid(data["tid"]),
        name=_name(data["name"]) if "name" in data else sid,
        domains=_domains(data.get("domains", [])),
        features={**DEFAULT_FEATURES, **_features(data.get("features", {}))},
        cmp_config=_json_object(data.get("cmp_config", {}), "cmp_config"),
        recs_config=_json_object(data.get("recs_config", {}), "recs_config"),
    )


def parse_site_patch(body: Any) -> SitePatch:
    data = _object(body, _PATCH_FIELDS, read_only=("sid", "tid"))
    if not data:
        raise InvalidField("$", f"nothing to change; send one or more of {', '.join(_PATCH_FIELDS)}")
    return SitePatch(
        name=_name(data["name"]) if "name" in data else None,
        domains=_domains(data["domains"]) if "domains" in data else None,
        features=_features(data["features"]) if "features" in data else None,
        cmp_config=_json_object(data["cmp_config"], "cmp_config") if "cmp_config" in data else None,
        recs_config=(_json_object(data["recs_config"], "recs_config")
                     if "recs_config" in data else None),
    )


def parse_new_tenant(body: Any) -> NewTenant:
    data = _object(body, ("tid", "name"))
    if "tid" not in data:
        raise InvalidField("tid", "is required")
    tid = parse_tid(data["tid"])
    return NewTenant(tid=tid, name=_name(data["name"]) if "name" in data else tid)


def parse_new_token(body: Any) -> NewToken:
    data = _object(body, ("name", "site_ids"))
    for required in ("name", "site_ids"):
        if required not in data:
            raise InvalidField(required, "is required")
    site_ids = data["site_ids"]
    if not isinstance(site_ids, list) or not 1 <= len(site_ids) <= MAX_TOKEN_SITES:
        raise InvalidField("site_ids", f"must be a list of 1 to {MAX_TOKEN_SITES} site ids")
    parsed = [parse_sid(sid, f"site_ids[{i}]") for i, sid in enumerate(site_ids)]
    return NewToken(name=_name(data["name"]), site_ids=tuple(dict.fromkeys(parsed)))


def parse_introspection(body: Any) -> str:
    data = _object(body, ("token",))
    token = data.get("token")
    if not isinstance(token, str) or not 1 <= len(token) <= 256:
        raise InvalidField("token", "must be a string of 1 to 256 characters")
    return token


def parse_tid_filter(request: web.Request) -> str | None:
    value = request.query.get("tid")
    return None if value is None else parse_tid(value)
