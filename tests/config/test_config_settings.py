"""ConfigSettings from the environment: defaults, every problem at once, secrets kept secret."""

from __future__ import annotations

import pytest

from viz.common.errors import SettingsError
from viz.config.settings import ConfigSettings

BASE = {"VIZ_PG_DSN": "postgresql://viz@db:5432/viz",
        "VIZ_ADMIN_TOKEN": "a-very-long-admin-token-value",
        "VIZ_SERVICE_TOKEN": "a-very-long-service-token-value"}


def test_reads_defaults() -> None:
    settings = ConfigSettings.from_env(BASE)
    assert (settings.http.host, settings.http.port) == ("127.0.0.1", 3002)
    assert settings.postgres.dsn == BASE["VIZ_PG_DSN"]
    assert settings.admin_token.reveal() == BASE["VIZ_ADMIN_TOKEN"]
    assert settings.service_token.reveal() == BASE["VIZ_SERVICE_TOKEN"]
    assert settings.key_grace_s == 900.0
    assert settings.log_level == "INFO"


def test_reads_overrides() -> None:
    settings = ConfigSettings.from_env({**BASE, "VIZ_CONFIG_HOST": "0.0.0.0",
                                        "VIZ_CONFIG_PORT": "8002",
                                        "VIZ_CONFIG_KEY_GRACE_S": "1200",
                                        "VIZ_LOG_LEVEL": "debug"})
    assert (settings.http.host, settings.http.port) == ("0.0.0.0", 8002)
    assert settings.key_grace_s == 1200.0
    assert settings.log_level == "DEBUG"


def test_lists_every_problem_in_one_error() -> None:
    with pytest.raises(SettingsError) as caught:
        ConfigSettings.from_env({"VIZ_ADMIN_TOKEN": "short", "VIZ_CONFIG_PORT": "http",
                                 "VIZ_CONFIG_KEY_GRACE_S": "-1", "VIZ_LOG_LEVEL": "LOUD"})
    assert caught.value.problems == [
        "VIZ_CONFIG_PORT='http' is not an integer",
        "VIZ_PG_DSN is required but not set",
        "VIZ_ADMIN_TOKEN must be at least 16 characters long",
        "VIZ_SERVICE_TOKEN is required but not set",
        "VIZ_CONFIG_KEY_GRACE_S=-1.0 must be >= 0.0",
        "VIZ_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
    ]
    assert "short" not in str(caught.value)


def test_refuses_one_token_for_both_apis() -> None:
    with pytest.raises(SettingsError, match="VIZ_ADMIN_TOKEN and VIZ_SERVICE_TOKEN must be "
                                            "different"):
        ConfigSettings.from_env({**BASE, "VIZ_SERVICE_TOKEN": BASE["VIZ_ADMIN_TOKEN"]})


def test_tokens_never_show_in_a_repr() -> None:
    text = repr(ConfigSettings.from_env(BASE))
    assert BASE["VIZ_ADMIN_TOKEN"] not in text and BASE["VIZ_SERVICE_TOKEN"] not in text
