"""Settings are read once, typed, and every problem is reported in one error."""

from __future__ import annotations

import pytest

from viz.common.errors import SettingsError
from viz.common.settings import ConfigClientSettings, Env, KafkaSettings, PostgresSettings, Secret


def test_reports_every_bad_variable_in_one_error() -> None:
    env = Env({"VIZ_PG_POOL_MAX": "many", "VIZ_KAFKA_PARTITIONS": "0"})
    PostgresSettings.read(env)
    KafkaSettings.read(env)
    with pytest.raises(SettingsError) as caught:
        env.done()
    problems = caught.value.problems
    assert "VIZ_PG_DSN is required but not set" in problems
    assert "VIZ_PG_POOL_MAX='many' is not an integer" in problems
    assert "VIZ_KAFKA_BOOTSTRAP is required but not set" in problems
    assert "VIZ_KAFKA_PARTITIONS=0 must be >= 1" in problems
    assert len(problems) == 4


def test_defaults_apply_when_variables_are_unset() -> None:
    env = Env({"VIZ_KAFKA_BOOTSTRAP": "127.0.0.1:9092"})
    kafka = KafkaSettings.read(env)
    env.done()
    assert kafka.topic_raw == "viz.traffic.raw"
    assert kafka.topic_dlq == "viz.traffic.dlq"
    assert kafka.partitions == 12


def test_rejects_a_dsn_with_the_wrong_scheme() -> None:
    env = Env({"VIZ_PG_DSN": "mysql://localhost/db"})
    PostgresSettings.read(env)
    with pytest.raises(SettingsError, match="VIZ_PG_DSN must be a URL with scheme postgresql"):
        env.done()


def test_a_short_secret_is_refused_without_echoing_it() -> None:
    env = Env({"VIZ_SERVICE_TOKEN": "hunter2"})
    ConfigClientSettings.read(env)
    with pytest.raises(SettingsError) as caught:
        env.done()
    assert "VIZ_SERVICE_TOKEN must be at least 16 characters long" in caught.value.problems
    assert "hunter2" not in str(caught.value)


def test_secret_never_shows_in_repr_and_compares_by_value() -> None:
    secret = Secret("s3cr3t-value-long-enough")
    settings_repr = repr(ConfigClientSettings(url="http://x", service_token=secret,
                                              cache_ttl_s=1, max_stale_s=1, negative_ttl_s=1,
                                              timeout_s=1))
    assert "s3cr3t" not in settings_repr
    assert "s3cr3t" not in str(secret)
    assert secret.matches("s3cr3t-value-long-enough")
    assert secret.matches(b"s3cr3t-value-long-enough")
    assert not secret.matches("s3cr3t-value-long-enougH")
    assert not secret.matches("")


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("true", True), ("off", False),
                                               ("No", False)])
def test_booleans_accept_the_usual_spellings(raw: str, expected: bool) -> None:
    env = Env({"FLAG": raw})
    assert env.bool("FLAG", False) is expected
    env.done()


def test_a_boolean_typo_is_an_error() -> None:
    env = Env({"FLAG": "ture"})
    env.bool("FLAG", False)
    with pytest.raises(SettingsError, match="FLAG='ture' is not a boolean"):
        env.done()
