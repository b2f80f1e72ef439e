"""Current (production) data for monitoring: CSV, Parquet or JSONL files and globs, or the request
log directory of an on-prem deployment (each request's payload becomes rows, with its prediction
and request id)."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlflow_steward.errors import MonitoringError
from mlflow_steward.monitoring import NOTES

if TYPE_CHECKING:
    from mlflow_steward.plugins.services import StewardServices


def read_table(path: Any, source: Any = None) -> pd.DataFrame:
    """A CSV, Parquet or JSON(L) table by its name's suffix; from ``source`` (a file object)
    when given, else from ``path``."""
    suffix = path.suffix.lower()
    source = path if source is None else source
    try:
        if suffix == ".csv":
            return pd.read_csv(source)
        if suffix == ".parquet":
            return pd.read_parquet(source)
        if suffix in (".jsonl", ".ndjson"):
            return pd.read_json(source, lines=True)
        if suffix == ".json":
            return pd.read_json(source)
    except Exception as exc:
        raise MonitoringError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    raise MonitoringError(f"{path}: unknown file type {suffix!r}; use .csv, .parquet or .jsonl")


def read_request_logs(
    directory: Path, version: str | None = None, since: float | None = None
) -> pd.DataFrame:
    """Rows of every successful logged request (payloads logged), with predictions; only those
    answered by ``version`` when given (a deployment's log holds every version it served), and
    only those newer than ``since`` (UNIX time) when given. Columnar segments are scanned with
    the filter pushed down; segments of the 0.1.0 format are read request by request, and
    ``frame.attrs["steward.notes"]`` says so (the verdict repeats it)."""
    from mlflow_steward.deployment.onprem.reqlog import read_rows

    try:
        window = read_rows(directory, version, since)
    except (OSError, ValueError) as exc:  # pyarrow's errors are ValueErrors (ArrowInvalid)
        raise MonitoringError(
            f"cannot read the request log in {directory}: {type(exc).__name__}: {exc}"
        ) from exc
    if window.frame is None or not len(window.frame):
        raise MonitoringError(
            f"no request with a logged payload in {directory}"
            + (f" answered by version {version}" if version is not None else "")
            + (" in the window" if since is not None else "")
            + f" ({window.skipped} rows skipped: other versions, failed or older requests, or "
            "payload logging switched off)"
        )
    frame = window.frame
    frame.attrs[NOTES] = list(window.notes)
    return frame


def read_current(spec: str, version: str | None = None, since: float | None = None) -> pd.DataFrame:
    """A file, a glob of files, or an on-prem deployment's request-log directory (then only the
    requests ``version`` answered, when given). ``since``: only files modified (requests made)
    after that UNIX time."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if any(path.glob("requests-*")):
            return read_request_logs(path, version, since)
        raise MonitoringError(f"{spec} is a folder without request-log files (requests-*)")
    paths = (
        [Path(p) for p in sorted(glob.glob(str(path)))] if any(c in spec for c in "*?[") else [path]
    )
    missing = [p for p in paths if not p.is_file()]
    if not paths or missing:
        raise MonitoringError(f"no data file at {spec}")
    if since is not None:
        paths = [p for p in paths if p.stat().st_mtime >= since]
        if not paths:
            raise MonitoringError(f"no data file at {spec} changed in the monitor's window")
    return pd.concat([read_table(p) for p in paths], ignore_index=True)


def request_log_dir(session: StewardServices, deployment: str) -> Path:
    """Where deployment ``deployment`` writes its request log."""
    from mlflow_steward.errors import DeploymentError
    from mlflow_steward.records.deployments import DeploymentStore

    try:
        info = DeploymentStore(session.db_engine).require(deployment)
    except DeploymentError as exc:
        raise MonitoringError(str(exc)) from None
    if info.options.get("request_log") is False:
        raise MonitoringError(
            f"deployment {deployment!r} does not log requests (request_log: false); switch it "
            "on to monitor its traffic"
        )
    folder = info.options.get("request_log_dir") or (
        Path(info.runtime.get("state_dir", "")) / "requests"
    )
    return Path(folder)
