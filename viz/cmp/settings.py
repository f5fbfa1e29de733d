"""viz-cmp's runtime knobs (``VIZ_CMP_*`` plus the shared blocks), read once by ``__main__``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from viz.common.settings import (
    ConfigClientSettings,
    Env,
    HttpSettings,
    PostgresSettings,
    Secret,
)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
COOKIE_SECRET_MIN_CHARS = 32
COOKIE_MAX_AGE_LIMIT_S = 396 * 86_400
"""13 months (the CNIL/ePrivacy ceiling for a consent cookie), rounded up to whole days."""


@dataclass(frozen=True)
class CmpSettings:
    http: HttpSettings
    postgres: PostgresSettings
    config: ConfigClientSettings
    cookie_secret: Secret
    """Signs ``viz_consent`` cookies (HMAC-SHA256); services verifying them need it too."""
    cookie_previous_secret: Secret | None
    """Still accepted when verifying, never used to sign: set it while rotating the secret."""
    cookie_max_age_s: int
    log_level: str

    def cookie_keys(self) -> tuple[bytes, ...]:
        """Verification keys, signing key first."""
        keys = [self.cookie_secret.reveal().encode()]
        if self.cookie_previous_secret is not None:
            keys.append(self.cookie_previous_secret.reveal().encode())
        return tuple(keys)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> CmpSettings:
        env = Env(environ)
        previous = environ.get("VIZ_CMP_COOKIE_PREVIOUS_SECRET")
        settings = cls(
            http=HttpSettings.read(env, "cmp", 3003),
            postgres=PostgresSettings.read(env),
            config=ConfigClientSettings.read(env),
            cookie_secret=env.secret("VIZ_CMP_COOKIE_SECRET", min_length=COOKIE_SECRET_MIN_CHARS),
            cookie_previous_secret=(
                env.secret("VIZ_CMP_COOKIE_PREVIOUS_SECRET", min_length=COOKIE_SECRET_MIN_CHARS)
                if previous else None),
            cookie_max_age_s=env.int("VIZ_CMP_COOKIE_MAX_AGE_S", 365 * 86_400, min=60,
                                     max=COOKIE_MAX_AGE_LIMIT_S),
            log_level=env.str("VIZ_LOG_LEVEL", "INFO").upper(),
        )
        if settings.log_level not in LOG_LEVELS:
            env.problems.append(f"VIZ_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        env.done()
        return settings
