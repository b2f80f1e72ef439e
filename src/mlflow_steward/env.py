"""The environment variables steward reads, each named once (this module imports nothing)."""

#: The configuration file (after ``--config``, before ``./steward.yaml``).
CONFIG_ENV = "MLFLOW_STEWARD_CONFIG"
#: Who acts, outside the server (else the operating-system user).
ACTOR_ENV = "MLFLOW_STEWARD_ACTOR"
#: The HMAC key of the audit chain's hashes.
AUDIT_KEY_ENV = "MLFLOW_STEWARD_AUDIT_KEY"
#: Where on-prem deployments keep models, logs and request logs.
HOME_ENV = "MLFLOW_STEWARD_HOME"
#: The server's source of identity (``basic``, ``trusted-header``, ...).
AUTH_ENV = "MLFLOW_STEWARD_AUTH"
#: The header carrying the identity in ``trusted-header`` mode.
TRUSTED_HEADER_ENV = "MLFLOW_STEWARD_TRUSTED_HEADER"
#: The largest request body the server's guarded routes read.
MAX_BODY_ENV = "MLFLOW_STEWARD_MAX_BODY_BYTES"
#: ``1``: the CLI shows tracebacks.
DEBUG_ENV = "MLFLOW_STEWARD_DEBUG"
#: Plugins not to load (comma-separated names).
DISABLE_ENV = "MLFLOW_STEWARD_DISABLE_PLUGINS"
#: ``1``: load no plugins from entry points.
DISABLE_AUTOLOAD_ENV = "MLFLOW_STEWARD_DISABLE_PLUGIN_AUTOLOAD"
#: ``1``: run on an MLflow outside the tested range (a warning on every start, an audit entry).
ALLOW_UNTESTED_MLFLOW_ENV = "MLFLOW_STEWARD_ALLOW_UNTESTED_MLFLOW"
#: Test-only: the step of an install where the edge agent stops until killed
#: (``install``, ``swap``, ``commit``).
EDGE_AGENT_PAUSE_ENV = "MLFLOW_STEWARD_EDGE_AGENT_PAUSE"

#: Every variable above (tests clear them all).
ALL = (
    CONFIG_ENV,
    ACTOR_ENV,
    AUDIT_KEY_ENV,
    HOME_ENV,
    AUTH_ENV,
    TRUSTED_HEADER_ENV,
    MAX_BODY_ENV,
    DEBUG_ENV,
    DISABLE_ENV,
    DISABLE_AUTOLOAD_ENV,
    ALLOW_UNTESTED_MLFLOW_ENV,
    EDGE_AGENT_PAUSE_ENV,
)
