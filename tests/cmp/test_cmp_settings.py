"""CmpSettings: defaults, and every bad variable reported at once."""

from __future__ import annotations

import pytest

from viz.cmp.settings import CmpSettings
from viz.common.errors import SettingsError

BASE = {"VIZ_PG_DSN": "postgresql://u:p@127.0.0.1:5432/viz", "VIZ_SERVICE_TOKEN": "s" * 20,
        "VIZ_CMP_COOKIE_SECRET": "c" * 32}


def test_defaults() -> None:
    settings = CmpSettings.from_env(BASE)
    assert (settings.http.host, settings.http.port) == ("127.0.0.1", 3003)
    assert settings.config.url == "http://127.0.0.1:3002"
    assert settings.cookie_max_age_s == 365 * 86_400
    assert settings.cookie_keys() == (b"c" * 32,)
    assert "c" * 32 not in repr(settings)


def test_a_previous_cookie_secret_is_accepted_for_verification() -> None:
    settings = CmpSettings.from_env({**BASE, "VIZ_CMP_COOKIE_PREVIOUS_SECRET": "p" * 32})
    assert settings.cookie_keys() == (b"c" * 32, b"p" * 32)


def test_every_problem_is_listed_and_no_secret_is_echoed() -> None:
    with pytest.raises(SettingsError) as caught:
        CmpSettings.from_env({**BASE, "VIZ_CMP_COOKIE_SECRET": "short-secret",
                              "VIZ_CMP_COOKIE_PREVIOUS_SECRET": "old",
                              "VIZ_CMP_COOKIE_MAX_AGE_S": str(400 * 86_400),
                              "VIZ_CMP_PORT": "http"})
    problems = caught.value.problems
    assert "VIZ_CMP_COOKIE_SECRET must be at least 32 characters long" in problems
    assert "VIZ_CMP_COOKIE_PREVIOUS_SECRET must be at least 32 characters long" in problems
    assert any(p.startswith("VIZ_CMP_COOKIE_MAX_AGE_S=") for p in problems)
    assert any(p.startswith("VIZ_CMP_PORT=") for p in problems)
    assert "short-secret" not in str(caught.value)


def test_the_cookie_secret_is_required() -> None:
    with pytest.raises(SettingsError) as caught:
        CmpSettings.from_env({k: v for k, v in BASE.items() if k != "VIZ_CMP_COOKIE_SECRET"})
    assert caught.value.problems == ["VIZ_CMP_COOKIE_SECRET is required but not set"]
