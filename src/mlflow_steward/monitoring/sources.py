"""The built-in data sources of monitors: files (CSV, Parquet, JSONL, globs), the request log of
an on-prem deployment, S3 objects, and the statistics edge agents upload."""

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


def _s3(spec: Any, context: Any) -> Any:
    """``s3://bucket/prefix``: every CSV, Parquet or JSONL object under the prefix (modified after
    ``since``). boto3 finds credentials as usual; ``MLFLOW_S3_ENDPOINT_URL`` (MLflow's setting)
    or ``AWS_ENDPOINT_URL`` points it at another endpoint (MinIO, moto)."""
    import io
    from datetime import UTC, datetime
    from pathlib import PurePosixPath

    import pandas as pd

    from mlflow_steward.monitoring.data import read_table

    if not isinstance(spec, str) or not spec.startswith("s3://"):
        raise MonitoringError(f"s3: expected s3://bucket/prefix, got {spec!r}")
    from mlflow_steward import s3

    try:
        from botocore.exceptions import BotoCoreError, ClientError

        client = s3.client()
    except ImportError:
        raise MonitoringError(
            "the s3 data source needs boto3: pip install 'mlflow-steward[s3]'"
        ) from None
    bucket, _, prefix = spec.removeprefix("s3://").partition("/")
    frames = []
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        keys = [
            obj["Key"]
            for page in pages
            for obj in page.get("Contents", [])
            if PurePosixPath(obj["Key"]).suffix.lower() in (".csv", ".parquet", ".jsonl", ".ndjson")
            and (
                context.since is None
                or obj["LastModified"] >= datetime.fromtimestamp(context.since, UTC)
            )
        ]
        for key in sorted(keys):
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            frames.append(read_table(PurePosixPath(key), io.BytesIO(body)))
    except (BotoCoreError, ClientError) as exc:
        raise MonitoringError(f"cannot read {spec}: {exc}") from exc
    if not frames:
        raise MonitoringError(
            f"no CSV, Parquet or JSONL object under {spec}"
            + (" changed in the monitor's window" if context.since is not None else "")
        )
    return pd.concat(frames, ignore_index=True)


def _edge(spec: Any, context: Any) -> Any:
    """``URI`` or ``{uploads: URI, group: G}``: the statistics edge agents uploaded for the
    monitored version (a folder, ``file://`` or ``s3://bucket/prefix``), merged across devices
    (of ``group``) and windows into one sketch per column; never rows."""
    from mlflow_steward.deployment.edge.stats import read_uploads
    from mlflow_steward.monitoring.sketches import ColumnSketch, SketchedWindow

    if isinstance(spec, str):
        spec = {"uploads": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("uploads"), str):
        raise MonitoringError(
            f"edge: expected the agents' uploads (a folder or s3://bucket/prefix) or "
            f"{{uploads: ..., group: ...}}, got {spec!r}"
        )
    unknown = sorted(set(spec) - {"uploads", "group"})
    if unknown:
        raise MonitoringError(f"edge: unknown key(s) {', '.join(unknown)} (known: uploads, group)")
    group = spec.get("group")
    if group is not None and not isinstance(group, str):
        raise MonitoringError(f"edge: group must be a device group's name, got {group!r}")
    if context.model is None or context.version is None:
        raise MonitoringError("edge: statistics are read for one model version")
    window = read_uploads(
        spec["uploads"], context.model, context.version, group=group, since=context.since
    )
    who = f"group {group}" if group else "all groups"
    notes = [
        f"statistics from edge devices ({who}): {len(window.devices)} device(s), "
        f"{window.windows} window(s), {window.rows} rows sketched on the devices"
    ]
    if window.dropped:
        notes.append(
            f"{window.dropped} window(s) dropped on devices before upload (spool cap reached): "
            "their rows are not in the verdict"
        )
    columns = dict(window.sketches)
    if not window.rows and context.columns:  # nothing uploaded yet: an empty window, not a schema
        columns = {name: ColumnSketch.empty(kind) for name, kind in context.columns.items()}
    return SketchedWindow(columns, window.rows, (*notes, *window.notes))


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
    yield DataSource(
        name="s3",
        read=_s3,
        help="CSV, Parquet or JSONL objects under s3://bucket/prefix (boto3: the s3 extra)",
    )
    yield DataSource(
        name="edge",
        read=_edge,
        help="statistics edge agents uploaded (a folder or s3://bucket/prefix; group: optional)",
    )
