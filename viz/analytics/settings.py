"""Runtime knobs of viz-analytics (``VIZ_ANALYTICS_*`` plus the shared blocks)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from viz.common.settings import ClickHouseSettings, ConfigClientSettings, Env, HttpSettings


@dataclass(frozen=True)
class AnalyticsSettings:
    http: HttpSettings
    clickhouse: ClickHouseSettings
    config: ConfigClientSettings
    token_cache_ttl_s: float
    max_range_days: int
    query_threads: int
    log_level: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AnalyticsSettings:
        env = Env(environ)
        settings = cls(
            http=HttpSettings.read(env, "analytics", 3004),
            clickhouse=ClickHouseSettings.read(env),
            config=ConfigClientSettings.read(env),
            # A revoked API token stops working within this many seconds.
            token_cache_ttl_s=env.float("VIZ_ANALYTICS_TOKEN_CACHE_TTL_S", 60.0, min=0.0),
            max_range_days=env.int("VIZ_ANALYTICS_MAX_RANGE_DAYS", 400, min=1),
            query_threads=env.int("VIZ_ANALYTICS_QUERY_THREADS", 4, min=1, max=64),
            log_level=env.str("VIZ_LOG_LEVEL", "INFO"),
        )
        env.done()
        return settings
