"""Kafka topics the platform needs, created if missing (part of ``viz migrate``)."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from viz.common.settings import KafkaSettings

log = logging.getLogger(__name__)

RAW_RETENTION_MS = 48 * 3600 * 1000
DLQ_RETENTION_MS = 14 * 24 * 3600 * 1000


def ensure_topics(settings: KafkaSettings, *, timeout_s: float = 30.0) -> list[str]:
    """Create the raw and dead-letter topics when absent; returns the names created now.

    Existing topics are left as they are (a partition count is never changed behind an
    operator's back: placement by site id depends on it).
    """
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    existing = admin.list_topics(timeout=timeout_s).topics
    wanted = [
        NewTopic(settings.topic_raw, settings.partitions, 1,
                 config={"retention.ms": str(RAW_RETENTION_MS)}),
        NewTopic(settings.topic_dlq, 1, 1, config={"retention.ms": str(DLQ_RETENTION_MS)}),
    ]
    missing = [t for t in wanted if t.topic not in existing]
    if not missing:
        return []
    created: list[str] = []
    for name, future in admin.create_topics(missing, request_timeout=timeout_s).items():
        try:
            future.result(timeout_s)
            created.append(name)
        except KafkaException as exc:
            # Another `viz migrate` may have created it in the meantime: that is success.
            if exc.args and getattr(exc.args[0], "name", lambda: "")() == "TOPIC_ALREADY_EXISTS":
                continue
            raise
    log.info("created kafka topics %s", created)
    return created
