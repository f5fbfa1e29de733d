"""The root of Viz's exception tree; each error knows whether a retry could succeed."""


class VizError(Exception):
    """Base class of every error Viz raises on purpose."""

    retryable = False


class SettingsError(VizError, ValueError):
    """One or more environment variables are missing or invalid; lists every problem at once."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__(
            "invalid settings:\n" + "\n".join(f"  - {p}" for p in self.problems)
        )


class UnavailableError(VizError, ConnectionError):
    """A dependency (PostgreSQL, config service, broker, ClickHouse) cannot be reached now."""

    retryable = True
