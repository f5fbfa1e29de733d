"""CollectSettings: defaults, limits, and every problem reported at once."""

from __future__ import annotations

import pytest

from viz.collect.settings import COOKIE_MAX_AGE_LIMIT_S, CollectSettings
from viz.common.errors import SettingsError

BASE = {"VIZ_KAFKA_BOOTSTRAP": "127.0.0.1:9092", "VIZ_SERVICE_TOKEN": "s" * 32}


def test_defaults_listen_on_3001_with_one_worker() -> None:
    settings = CollectSettings.from_env(BASE)
    assert (settings.http.host, settings.http.port, settings.workers) == ("127.0.0.1", 3001, 1)
    assert settings.kafka.topic_raw == "viz.traffic.raw"
    assert settings.producer.compression == "lz4"
    assert settings.cookie_max_age_s <= COOKIE_MAX_AGE_LIMIT_S
    assert settings.config_client.cache_ttl_s == 300.0


def test_cookie_lifetime_cannot_exceed_13_months() -> None:
    with pytest.raises(SettingsError, match="VIZ_COLLECT_COOKIE_MAX_AGE_S"):
        CollectSettings.from_env({**BASE, "VIZ_COLLECT_COOKIE_MAX_AGE_S": str(400 * 86_400)})


def test_every_bad_variable_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        CollectSettings.from_env({"VIZ_COLLECT_WORKERS": "0", "VIZ_COLLECT_COMPRESSION": "brotli",
                                  "VIZ_COLLECT_DELIVERY_TIMEOUT_S": "soon"})
    text = str(info.value)
    for name in ("VIZ_KAFKA_BOOTSTRAP", "VIZ_SERVICE_TOKEN", "VIZ_COLLECT_WORKERS",
                 "VIZ_COLLECT_COMPRESSION", "VIZ_COLLECT_DELIVERY_TIMEOUT_S"):
        assert name in text


def test_workers_need_a_fixed_port() -> None:
    with pytest.raises(SettingsError, match="SO_REUSEPORT"):
        CollectSettings.from_env({**BASE, "VIZ_COLLECT_WORKERS": "2", "VIZ_COLLECT_PORT": "0"})
