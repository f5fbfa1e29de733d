"""Typed settings read once from the environment, every problem reported in one error.

Each service defines a frozen dataclass with ``from_env(environ)``; the shared blocks below
(PostgreSQL, Redis, Kafka, ClickHouse) are read the same way by every service that needs them.
Nothing here reads ``os.environ`` by itself: callers pass the mapping in.
"""

from __future__ import annotations

import builtins
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from viz.common.errors import SettingsError

_REQUIRED: Any = object()


@dataclass(frozen=True)
class Secret:
    """A secret string that never shows in reprs, logs or tracebacks."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def matches(self, candidate: str | bytes) -> bool:
        """Constant-time comparison with a presented value."""
        if isinstance(candidate, str):
            candidate = candidate.encode()
        return hmac.compare_digest(self._value.encode(), candidate)

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


class Env:
    """Reads typed values from an environ mapping and collects every problem it meets.

    Call :meth:`done` after the last read: it raises one :class:`SettingsError` listing all of
    them, so an operator fixes a bad deployment in one round instead of one variable at a time.
    """

    def __init__(self, environ: Mapping[builtins.str, str]) -> None:
        self._environ = environ
        self.problems: list[builtins.str] = []

    def _raw(self, name: builtins.str, default: Any) -> Any:
        value = self._environ.get(name)
        if value is None or value == "":
            if default is _REQUIRED:
                self.problems.append(f"{name} is required but not set")
            return default
        return value

    def str(self, name: builtins.str, default: Any = _REQUIRED, *, choices: tuple[builtins.str, ...] = ()) -> builtins.str:
        value = self._raw(name, default)
        if value is _REQUIRED:
            return ""
        if choices and value not in choices:
            self.problems.append(f"{name}={value!r} must be one of {', '.join(choices)}")
        return value  # type: ignore[no-any-return]

    def int(self, name: builtins.str, default: Any = _REQUIRED, *, min: builtins.int | None = None,
            max: builtins.int | None = None) -> builtins.int:
        value = self._raw(name, default)
        if value is _REQUIRED:
            return 0
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.problems.append(f"{name}={value!r} is not an integer")
            return 0
        self._check_range(name, number, min, max)
        return number

    def float(self, name: builtins.str, default: Any = _REQUIRED, *, min: builtins.float | None = None,
              max: builtins.float | None = None) -> builtins.float:
        value = self._raw(name, default)
        if value is _REQUIRED:
            return 0.0
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.problems.append(f"{name}={value!r} is not a number")
            return 0.0
        self._check_range(name, number, min, max)
        return number

    def bool(self, name: builtins.str, default: Any = _REQUIRED) -> builtins.bool:
        value = self._raw(name, default)
        if value is _REQUIRED:
            return False
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{name}={value!r} is not a boolean (use 1/0, true/false)")
        return False

    def secret(self, name: builtins.str, default: Any = _REQUIRED, *, min_length: builtins.int = 16) -> Secret:
        value = self._raw(name, default)
        if value is _REQUIRED:
            return Secret("")
        if len(value) < min_length:
            # Never echo the value of a secret, not even in a settings error.
            self.problems.append(f"{name} must be at least {min_length} characters long")
        return Secret(value)

    def url(self, name: builtins.str, default: Any = _REQUIRED, *, schemes: tuple[builtins.str, ...]) -> builtins.str:
        value = self._raw(name, default)
        if value is _REQUIRED:
            return ""
        scheme = urlsplit(value).scheme
        if scheme not in schemes:
            self.problems.append(
                f"{name} must be a URL with scheme {' or '.join(schemes)}, got scheme {scheme!r}"
            )
        return value  # type: ignore[no-any-return]

    def _check_range(self, name: builtins.str, number: builtins.float, lo: builtins.float | None, hi: builtins.float | None) -> None:
        if lo is not None and number < lo:
            self.problems.append(f"{name}={number} must be >= {lo}")
        if hi is not None and number > hi:
            self.problems.append(f"{name}={number} must be <= {hi}")

    def done(self) -> None:
        if self.problems:
            raise SettingsError(self.problems)


@dataclass(frozen=True)
class HttpSettings:
    """Where an HTTP service listens (``VIZ_<SERVICE>_HOST`` / ``_PORT``)."""

    host: str
    port: int

    @classmethod
    def read(cls, env: Env, service: str, default_port: int) -> HttpSettings:
        prefix = f"VIZ_{service.upper()}_"
        return cls(
            host=env.str(prefix + "HOST", "127.0.0.1"),
            port=env.int(prefix + "PORT", default_port, min=0, max=65535),
        )


@dataclass(frozen=True)
class PostgresSettings:
    dsn: str
    pool_min: int
    pool_max: int
    connect_timeout_s: float

    @classmethod
    def read(cls, env: Env) -> PostgresSettings:
        return cls(
            dsn=env.url("VIZ_PG_DSN", schemes=("postgresql", "postgres")),
            pool_min=env.int("VIZ_PG_POOL_MIN", 1, min=0, max=100),
            pool_max=env.int("VIZ_PG_POOL_MAX", 10, min=1, max=500),
            connect_timeout_s=env.float("VIZ_PG_CONNECT_TIMEOUT_S", 5.0, min=0.1),
        )


@dataclass(frozen=True)
class RedisSettings:
    url: str

    @classmethod
    def read(cls, env: Env) -> RedisSettings:
        return cls(url=env.url("VIZ_REDIS_URL", schemes=("redis", "rediss", "unix")))


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str
    topic_raw: str
    topic_dlq: str
    partitions: int

    @classmethod
    def read(cls, env: Env) -> KafkaSettings:
        return cls(
            bootstrap=env.str("VIZ_KAFKA_BOOTSTRAP"),
            topic_raw=env.str("VIZ_KAFKA_TOPIC_RAW", "viz.traffic.raw"),
            topic_dlq=env.str("VIZ_KAFKA_TOPIC_DLQ", "viz.traffic.dlq"),
            partitions=env.int("VIZ_KAFKA_PARTITIONS", 12, min=1, max=1024),
        )


@dataclass(frozen=True)
class ClickHouseSettings:
    dsn: str
    database: str

    @classmethod
    def read(cls, env: Env) -> ClickHouseSettings:
        return cls(
            dsn=env.url("VIZ_CLICKHOUSE_DSN", schemes=("chdb", "http", "https", "clickhouse")),
            database=env.str("VIZ_CLICKHOUSE_DATABASE", "viz"),
        )


@dataclass(frozen=True)
class ConfigClientSettings:
    """How a service reaches viz-config's internal API (the SiteDirectory's source)."""

    url: str
    service_token: Secret
    cache_ttl_s: float
    max_stale_s: float
    negative_ttl_s: float
    timeout_s: float

    @classmethod
    def read(cls, env: Env) -> ConfigClientSettings:
        return cls(
            url=env.url("VIZ_CONFIG_URL", "http://127.0.0.1:3002", schemes=("http", "https")),
            service_token=env.secret("VIZ_SERVICE_TOKEN"),
            cache_ttl_s=env.float("VIZ_SITE_CACHE_TTL_S", 300.0, min=1.0),
            max_stale_s=env.float("VIZ_SITE_CACHE_MAX_STALE_S", 86_400.0, min=0.0),
            negative_ttl_s=env.float("VIZ_SITE_CACHE_NEGATIVE_TTL_S", 30.0, min=0.0),
            timeout_s=env.float("VIZ_CONFIG_TIMEOUT_S", 2.0, min=0.05),
        )
