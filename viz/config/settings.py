"""viz-config's runtime knobs, read once from the environment by ``__main__``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from viz.common.settings import Env, HttpSettings, PostgresSettings, Secret

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# 5-minute site cache TTL in the other services + the current and previous 5-minute token
# windows: a visitor holding a token signed just before a rotation is still accepted.
DEFAULT_KEY_GRACE_S = 900.0


@dataclass(frozen=True)
class PublicUrls:
    """Where browsers reach the services (written into every site's config script)."""

    collect: str
    config: str
    cmp: str
    recs: str

    @classmethod
    def read(cls, env: Env) -> PublicUrls:
        def url(service: str, port: int) -> str:
            value = env.url(f"VIZ_PUBLIC_{service.upper()}_URL", f"http://127.0.0.1:{port}",
                            schemes=("http", "https"))
            return value.rstrip("/")

        return cls(collect=url("collect", 3001), config=url("config", 3002),
                   cmp=url("cmp", 3003), recs=url("recs", 3005))

    def as_dict(self) -> dict[str, str]:
        return {"collect": self.collect, "config": self.config, "cmp": self.cmp,
                "recs": self.recs}


def _default_tracker_dir() -> str:
    # Source and editable installs: the repository's tracker build, made by `make setup`.
    return str(Path(__file__).resolve().parents[2] / "tracker" / "dist")


@dataclass(frozen=True)
class ConfigSettings:
    http: HttpSettings
    postgres: PostgresSettings
    admin_token: Secret
    service_token: Secret
    key_grace_s: float
    log_level: str
    public: PublicUrls
    tracker_dir: Path
    demo_pages: bool

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
            public=PublicUrls.read(env),
            tracker_dir=Path(env.str("VIZ_CONFIG_TRACKER_DIR", _default_tracker_dir())),
            demo_pages=env.bool("VIZ_CONFIG_DEMO_PAGES", False),
        )
        if settings.log_level not in LOG_LEVELS:
            env.problems.append(f"VIZ_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        # One shared value would let a leaked service token open the admin API.
        if settings.admin_token.reveal() and settings.admin_token.matches(
                settings.service_token.reveal()):
            env.problems.append("VIZ_ADMIN_TOKEN and VIZ_SERVICE_TOKEN must be different")
        env.done()
        return settings
