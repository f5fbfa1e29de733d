"""viz-config's runtime knobs, read once from the environment by ``__main__``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from viz.common.settings import Env, HttpSettings, PostgresSettings, Secret

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# 5-minute site cache TTL in the other services + the current and previous 5-minute token
# windows: a visitor holding a token signed just before a rotation is still accepted.
DEFAULT_KEY_GRACE_S = 900.0


@dataclass(frozen=True)
class ConfigSettings:
    http: HttpSettings
    postgres: PostgresSettings
    admin_token: Secret
    service_token: Secret
    key_grace_s: float
    log_level: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ConfigSettings:
        env = Env(environ)
        settings = cls(
            http=HttpSettings.read(env, "config", 3002),
            postgres=PostgresSettings.read(env),
            admin_token=env.secret("VIZ_ADMIN_TOKEN"),
            service_token=env.secret("VIZ_SERVICE_TOKEN"),
            key_grace_s=env.float("VIZ_CONFIG_KEY_GRACE_S", DEFAULT_KEY_GRACE_S, min=0.0),
            log_level=env.str("VIZ_LOG_LEVEL", "INFO").upper(),
        )
        if settings.log_level not in LOG_LEVELS:
            env.problems.append(f"VIZ_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        # One shared value would let a leaked service token open the admin API.
        if settings.admin_token.reveal() and settings.admin_token.matches(
                settings.service_token.reveal()):
            env.problems.append("VIZ_ADMIN_TOKEN and VIZ_SERVICE_TOKEN must be different")
        env.done()
        return settings
