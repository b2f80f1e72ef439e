"""The built-in data sources of monitors: files (CSV, Parquet, JSONL, globs) and the request
log of an on-prem deployment."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mlflow_steward import hookimpl
from mlflow_steward.errors import MonitoringError
from mlflow_steward.plugins.types import DataSource


def _files(spec: Any, context: Any) -> Any:
    from mlflow_steward.monitoring.data import read_current

    if not isinstance(spec, str):
        raise MonitoringError(f"files: expected a path or glob, got {spec!r}")
    return read_current(spec, context.version, context.since)


def _requests(spec: Any, context: Any) -> Any:
    from mlflow_steward.monitoring.data import read_request_logs, request_log_dir

    if not isinstance(spec, str):
        raise MonitoringError(f"requests: expected a deployment name, got {spec!r}")
    folder = request_log_dir(context.session, spec)
    if not folder.is_dir():
        raise MonitoringError(f"deployment {spec!r} has logged no request yet (no folder {folder})")
    return read_request_logs(folder, context.version, context.since)


@hookimpl
def steward_data_sources() -> Iterator[DataSource]:
    yield DataSource(
        name="files", read=_files, help="CSV, Parquet or JSONL files: a path or a glob"
    )
    yield DataSource(
        name="requests",
        read=_requests,
        help="the request log of a steward deployment (on-prem target): its name",
    )
