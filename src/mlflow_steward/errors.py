"""Exception classes. Importing this module must stay cheap: no MLflow here."""

from __future__ import annotations


class StewardError(Exception):
    """Base class of every error steward raises on purpose; the CLI prints it as one line."""


class ConfigError(StewardError):
    """The configuration file is wrong; the message names the file, the key and the line."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.key = key
        where = path or "<config>"
        if line is not None:
            where = f"{where}:{line}"
        prefix = f"{where}: " if path or line is not None else ""
        keypart = f"{key}: " if key else ""
        super().__init__(f"{prefix}{keypart}{message}")


class PluginLoadError(StewardError):
    """A third-party plugin could not be imported or registered; the message names its distribution."""


class PluginConflictError(StewardError):
    """Two plugins provide the same name (policy, command, ...); the message names every provider."""


class RegistryURIError(StewardError):
    """The registry URI cannot be governed the way it was asked for."""


class AuditIntegrityError(StewardError):
    """The audit chain does not verify."""


class LifecycleError(StewardError):
    """A lifecycle move (promote, rollback, approve) cannot be carried out."""


class DeploymentError(StewardError):
    """A deployment cannot be created, changed or reached; the message says what to do."""


class MonitoringError(StewardError):
    """Monitoring cannot run (no baseline, unreadable data); the message says what to do."""


class InvalidVersion(StewardError):
    """A model version that MLflow's registry would not read as a version number."""
