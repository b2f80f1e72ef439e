"""Built-in plugin: the ``steward-onprem`` deployment target."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.plugins.types import DeploymentTarget, Option

OPTIONS: tuple[Option, ...] = (
    Option("port", "int", "the gateway's port: the deployment's stable endpoint"),
    Option("host", "str", "the address the gateway listens on", "127.0.0.1"),
    Option("workers", "int", "scoring-server worker processes per version", 1),
    Option(
        "env_manager",
        "str",
        "where the model's requirements come from: this Python (local) or a virtualenv",
        "local",
        choices=("local", "virtualenv"),
    ),
    Option("start_timeout", "duration", "how long a version may take to answer /ping", "300s"),
    Option("health_timeout", "duration", "how long the health-check prediction may take", "30s"),
    Option(
        "require_input_example",
        "bool",
        "refuse versions without a logged input example (the health check predicts on it)",
        False,
    ),
    Option("request_timeout", "duration", "how long one proxied request may take", "60s"),
    Option("drain", "duration", "how long the old version keeps running after a switch", "5s"),
    Option(
        "watch",
        "duration",
        "after a switch, how long the new version's error rate is watched (the old version "
        "stays warm meanwhile, for an instant automatic rollback)",
        "30s",
    ),
    Option(
        "error_rate_max",
        "number",
        "automatic rollback when a new version's error rate exceeds this fraction (5xx, "
        "unanswered requests, and MLflow's 400 for a model that raised; not bad input)",
        0.05,
    ),
    Option("error_rate_window", "duration", "the window the error rate is measured over", "60s"),
    Option(
        "error_rate_min_requests",
        "int",
        "requests in the window before the error rate can trigger a rollback",
        20,
    ),
    Option("request_log", "bool", "log every request and response", True),
    Option(
        "request_log_format",
        "str",
        "format of the request-log files",
        "jsonl",
        choices=("jsonl", "parquet"),
    ),
    Option(
        "request_log_dir",
        "str",
        "where request-log files go (default: <state dir>/<name>/requests)",
        "",
    ),
    Option(
        "payload_sample",
        "number",
        "fraction of requests whose payloads are logged (0 logs metadata only)",
        1.0,
    ),
    Option("rotate_rows", "int", "rows per request-log file", 10_000),
    Option("rotate_seconds", "duration", "start a new request-log file after this long", "300s"),
    Option("admin_host", "str", "the address of the gateway's admin API", "127.0.0.1"),
    Option(
        "state_dir",
        "str",
        "where models, logs and request logs are kept (default: $MLFLOW_STEWARD_HOME/"
        "deployments, ~/.mlflow-steward/deployments)",
        "",
    ),
)

HELP = """steward-onprem: serves a registered model version as MLflow's pyfunc scoring server behind
a stable steward gateway on this host. Updates are blue/green behind a health gate (/ping and a
prediction on the model's input example), optionally as a canary (--traffic new=10), with automatic
rollback on a failed gate or a high error rate, and request logging to rotating JSONL/Parquet files.
"""


def _client(target: DeploymentTarget, context: Any) -> Any:
    from mlflow_steward.deployment.onprem.client import OnPremClient

    return OnPremClient(target, context)


@hookimpl
def steward_deployment_targets() -> Iterator[DeploymentTarget]:
    yield DeploymentTarget(
        name="steward-onprem", kind="onprem", client=_client, help=HELP, options=OPTIONS
    )
