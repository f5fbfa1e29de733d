"""viz-collect's runtime knobs, read once from the environment (``VIZ_COLLECT_*`` and shared blocks).

Collect stores no client address. The one use of it is the in-memory rate limit
(``viz.collect.ratelimit``), keyed by the socket peer or, behind a load balancer, by the header
it sets (``VIZ_COLLECT_CLIENT_ADDRESS``). A reverse proxy in front only has to pass ``Origin``,
``Referer``, ``User-Agent``, ``Cookie`` and ``Sec-GPC`` through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from viz.common.settings import ConfigClientSettings, Env, HttpSettings, KafkaSettings

COOKIE_MAX_AGE_LIMIT_S = 396 * 86_400
"""13 months (the CNIL/ePrivacy ceiling for an analytics identifier), rounded up to whole days."""


@dataclass(frozen=True)
class ProducerSettings:
    """How the Kafka sink buffers and waits (``VIZ_COLLECT_*``)."""

    delivery_timeout_s: float
    """A request waits at most this long for its delivery reports, then gets 503."""
    max_queue_messages: int
    max_queue_kbytes: int
    linger_ms: float
    compression: str
    ready_check_interval_s: float
    flush_timeout_s: float

    @classmethod
    def read(cls, env: Env) -> ProducerSettings:
        return cls(
            delivery_timeout_s=env.float("VIZ_COLLECT_DELIVERY_TIMEOUT_S", 5.0, min=0.1,
                                         max=300.0),
            max_queue_messages=env.int("VIZ_COLLECT_MAX_QUEUE_MESSAGES", 100_000, min=1,
                                       max=10_000_000),
            max_queue_kbytes=env.int("VIZ_COLLECT_MAX_QUEUE_KBYTES", 262_144, min=1,
                                     max=2_147_483_647),
            linger_ms=env.float("VIZ_COLLECT_LINGER_MS", 2.0, min=0.0, max=1000.0),
            compression=env.str("VIZ_COLLECT_COMPRESSION", "lz4",
                                choices=("lz4", "zstd", "snappy", "gzip", "none")),
            ready_check_interval_s=env.float("VIZ_COLLECT_READY_CHECK_INTERVAL_S", 5.0,
                                             min=0.1),
            flush_timeout_s=env.float("VIZ_COLLECT_FLUSH_TIMEOUT_S", 30.0, min=0.0),
        )


@dataclass(frozen=True)
class CollectSettings:
    http: HttpSettings
    workers: int
    kafka: KafkaSettings
    producer: ProducerSettings
    config_client: ConfigClientSettings
    cookie_max_age_s: int
    """``Max-Age`` of the ``viz_bid`` cookie; at most 13 months."""
    keep_alive_timeout_s: float
    shutdown_timeout_s: float
    """On SIGTERM: how long in-flight requests may take before connections are cut."""
    max_pipelined_requests: int
    """Requests of one connection in flight at once; reading pauses beyond it."""
    rate_limit_per_s: float
    """Ingest requests (/init, /collect, /hit) per second per client address; 0 turns it off."""
    rate_limit_burst: int
    client_address: str
    """Where the client's address comes from: ``peer`` (the socket), or the header a trusted
    load balancer sets: ``x-forwarded-for`` (its last entry) or ``x-real-ip``."""
    log_level: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> CollectSettings:
        env = Env(environ)
        settings = cls(
            http=HttpSettings.read(env, "collect", 3001),
            workers=env.int("VIZ_COLLECT_WORKERS", 1, min=1, max=256),
            kafka=KafkaSettings.read(env),
            producer=ProducerSettings.read(env),
            config_client=ConfigClientSettings.read(env),
            cookie_max_age_s=env.int("VIZ_COLLECT_COOKIE_MAX_AGE_S", 365 * 86_400, min=60,
                                     max=COOKIE_MAX_AGE_LIMIT_S),
            keep_alive_timeout_s=env.float("VIZ_COLLECT_KEEP_ALIVE_TIMEOUT_S", 15.0, min=0.1),
            shutdown_timeout_s=env.float("VIZ_COLLECT_SHUTDOWN_TIMEOUT_S", 30.0, min=0.0),
            max_pipelined_requests=env.int("VIZ_COLLECT_MAX_PIPELINED_REQUESTS", 32, min=1,
                                           max=1024),
            rate_limit_per_s=env.float("VIZ_COLLECT_RATE_LIMIT_PER_S", 100.0, min=0.0),
            rate_limit_burst=env.int("VIZ_COLLECT_RATE_LIMIT_BURST", 400, min=1,
                                     max=1_000_000),
            client_address=env.str("VIZ_COLLECT_CLIENT_ADDRESS", "peer",
                                   choices=("peer", "x-forwarded-for", "x-real-ip")),
            log_level=env.str("VIZ_LOG_LEVEL", "INFO",
                              choices=("DEBUG", "INFO", "WARNING", "ERROR")),
        )
        if settings.workers > 1 and settings.http.port == 0:
            env.problems.append("VIZ_COLLECT_PORT=0 cannot be shared by several workers "
                                "(SO_REUSEPORT needs one fixed port)")
        env.done()
        return settings
