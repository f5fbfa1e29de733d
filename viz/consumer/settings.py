"""Runtime knobs of viz-consumer (``VIZ_CONSUMER_*`` plus the shared Kafka/ClickHouse blocks)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from viz.common.settings import ClickHouseSettings, Env, KafkaSettings


@dataclass(frozen=True)
class ConsumerSettings:
    kafka: KafkaSettings
    clickhouse: ClickHouseSettings
    group_id: str
    batch_max_events: int
    flush_interval_s: float
    session_timeout_ms: int
    retry_initial_s: float
    retry_max_s: float
    seen_ids_per_partition: int
    retention_days: int
    log_level: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ConsumerSettings:
        env = Env(environ)
        settings = cls(
            kafka=KafkaSettings.read(env),
            clickhouse=ClickHouseSettings.read(env),
            group_id=env.str("VIZ_CONSUMER_GROUP", "viz-consumer"),
            batch_max_events=env.int("VIZ_CONSUMER_BATCH_MAX_EVENTS", 10_000, min=1,
                                     max=1_000_000),
            flush_interval_s=env.float("VIZ_CONSUMER_FLUSH_INTERVAL_S", 5.0, min=0.01),
            # Tansu (the embedded broker) joins groups in seconds only around 6000 ms.
            session_timeout_ms=env.int("VIZ_CONSUMER_SESSION_TIMEOUT_MS", 6000, min=1000),
            retry_initial_s=env.float("VIZ_CONSUMER_RETRY_INITIAL_S", 0.5, min=0.01),
            retry_max_s=env.float("VIZ_CONSUMER_RETRY_MAX_S", 30.0, min=0.01),
            seen_ids_per_partition=env.int("VIZ_CONSUMER_SEEN_IDS_PER_PARTITION", 200_000, min=0),
            retention_days=env.int("VIZ_CLICKHOUSE_RETENTION_DAYS", 400, min=1, max=36500),
            log_level=env.str("VIZ_LOG_LEVEL", "INFO"),
        )
        env.done()
        return settings
