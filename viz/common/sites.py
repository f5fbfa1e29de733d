"""The site record other services receive from viz-config, and its wire format.

viz-config is the only writer of sites; every other service reads them through
``GET /internal/sites/{sid}`` (see :mod:`viz.common.site_directory`), decoded by
:meth:`SiteRecord.from_wire`. This module is that contract, shared by both ends.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SID_PATTERN = r"^[A-Za-z0-9_-]{3,64}$"
"""Site ids appear in script URLs: URL-safe, 3 to 64 characters."""
TID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""Tenant ids are signed into tokens next to a ``:`` separator, so they never contain one."""

SID_RE = re.compile(SID_PATTERN)
TID_RE = re.compile(TID_PATTERN)

FEATURES = ("collect", "cmp", "recs")
DEFAULT_FEATURES: Mapping[str, bool] = {"collect": True, "cmp": True, "recs": False}


def is_valid_sid(sid: str) -> bool:
    return bool(SID_RE.fullmatch(sid))


def is_valid_tid(tid: str) -> bool:
    return bool(TID_RE.fullmatch(tid))


@dataclass(frozen=True)
class SiteRecord:
    """Everything a service needs to serve one site, secret keys included.

    ``previous_key`` is set for a grace period after a key rotation so tokens issued under the
    old key keep verifying; ``previous_key_expires_at`` (epoch seconds) bounds it.
    """

    sid: str
    tid: str
    name: str
    domains: tuple[str, ...]
    features: Mapping[str, bool]
    cmp_config: Mapping[str, Any]
    recs_config: Mapping[str, Any]
    version: int
    secret_key: bytes = field(repr=False)
    previous_key: bytes | None = field(default=None, repr=False)
    previous_key_expires_at: float | None = None

    def verification_keys(self, now: float) -> tuple[bytes, ...]:
        """The keys a token may be signed with at ``now``: current first, then a live previous."""
        if (self.previous_key is not None and self.previous_key_expires_at is not None
                and now < self.previous_key_expires_at):
            return (self.secret_key, self.previous_key)
        return (self.secret_key,)

    def allows_origin_host(self, host: str) -> bool:
        """True when ``host`` is one of the site's domains or a subdomain of one."""
        host = host.lower().rstrip(".")
        return any(host == d or host.endswith("." + d) for d in self.domains)

    def to_wire(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "tid": self.tid,
            "name": self.name,
            "domains": list(self.domains),
            "features": dict(self.features),
            "cmp_config": dict(self.cmp_config),
            "recs_config": dict(self.recs_config),
            "version": self.version,
            "keys": {
                "current": self.secret_key.hex(),
                "previous": self.previous_key.hex() if self.previous_key is not None else None,
                "previous_expires_at": self.previous_key_expires_at,
            },
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> SiteRecord:
        """Decode the internal API's JSON; raises ``ValueError``/``KeyError`` when malformed."""
        keys = data["keys"]
        previous = keys.get("previous")
        expires = keys.get("previous_expires_at")
        return cls(
            sid=str(data["sid"]),
            tid=str(data["tid"]),
            name=str(data.get("name", "")),
            domains=tuple(str(d) for d in data["domains"]),
            features={str(k): bool(v) for k, v in data["features"].items()},
            cmp_config=dict(data.get("cmp_config") or {}),
            recs_config=dict(data.get("recs_config") or {}),
            version=int(data["version"]),
            secret_key=bytes.fromhex(keys["current"]),
            previous_key=bytes.fromhex(previous) if previous else None,
            previous_key_expires_at=float(expires) if expires is not None else None,
        )
