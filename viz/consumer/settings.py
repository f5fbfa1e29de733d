"""Runtime knobs of viz-consumer (``VIZ_CONSUMER_*`` plus the shared Kafka/ClickHouse blocks)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from viz.common.settings import ClickHouseSettings, Env, HttpSettings, KafkaSettings


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
    # Ids of the last ``dedup_horizon_s`` (at most ``seen_ids_per_partition`` per partition) are
    # read back from ClickHouse when a partition is assigned: a retry counts once across restarts.
    dedup_horizon_s: float = 86_400.0
    # Assigned nothing, or consumed nothing while the topic has unread data, for this long: the
    # Kafka consumer is recreated (a group that timed out during a broker stall may never rejoin).
    stall_timeout_s: float = 30.0
    # Not consuming (see above, or writes failing) for this long makes /readyz answer 503.
    unready_after_s: float = 30.0
    http: HttpSettings = HttpSettings("127.0.0.1", 3006)

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
            dedup_horizon_s=env.float("VIZ_CONSUMER_DEDUP_HORIZON_S", 86_400.0, min=0.0),
            stall_timeout_s=env.float("VIZ_CONSUMER_STALL_TIMEOUT_S", 30.0, min=1.0),
            unready_after_s=env.float("VIZ_CONSUMER_UNREADY_AFTER_S", 30.0, min=1.0),
            http=HttpSettings.read(env, "consumer", 3006),
        )
        env.done()
        return settings
