"""The ``sagemaker`` monitoring data source: an endpoint's data capture on S3.

SageMaker writes ``<destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/<file>.jsonl``; each line::

    {"captureData": {"endpointInput": {"observedContentType": "application/json",
                                       "mode": "INPUT", "data": "...", "encoding": "JSON"},
                     "endpointOutput": {..., "mode": "OUTPUT", ...}},
     "eventMetadata": {"eventId": "...", "inferenceTime": "2026-12-06T13:40:00Z"},
     "eventVersion": "0"}

``encoding`` is ``CSV``, ``JSON`` or ``BASE64`` (then ``observedContentType`` says what the
decoded bytes are). Inputs are MLflow's scoring payloads (``dataframe_split``,
``dataframe_records``, ``inputs``, ``instances``, a list of rows) or CSV with a header row; each
request becomes rows, with its predictions (``__prediction__``) and event id (``__request_id__``).

The spec is a steward-sagemaker deployment's name (destination, S3 endpoint and region come from
its options; only the variant of the monitored version, ``v<version>``, is read) or a mapping
``{endpoint: NAME, destination: s3://..., variant: ..., region: ..., s3_endpoint_url: ...}``
for an endpoint steward did not make.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from mlflow_steward.errors import MonitoringError

_SPEC_KEYS = {"endpoint", "destination", "variant", "region", "s3_endpoint_url"}


def _where(spec: Any, context: Any) -> tuple[dict[str, Any], str, str, str | None]:
    """(client options, destination, endpoint, variant or None)."""
    from mlflow_steward_aws.client import capture_destination

    if isinstance(spec, str):
        from mlflow_steward.records.deployments import DeploymentStore

        session = context.session
        info = DeploymentStore(session.db_engine, session.workspace()).get(spec)
        if info is None or info.target != "steward-sagemaker":
            raise MonitoringError(
                f"sagemaker: {spec!r} is not a steward-sagemaker deployment; name one, or give "
                "{endpoint: NAME, destination: s3://bucket/prefix} for another endpoint"
            )
        if not info.options.get("data_capture"):
            raise MonitoringError(
                f"deployment {spec!r} does not capture data: update it with -C data_capture=true"
            )
        variant = f"v{context.version}" if context.version is not None else None
        return dict(info.options), capture_destination(info.options), spec, variant
    if isinstance(spec, Mapping):
        unknown = set(spec) - _SPEC_KEYS
        if unknown or "endpoint" not in spec or "destination" not in spec:
            raise MonitoringError(
                f"sagemaker: expected {{endpoint: NAME, destination: s3://...}} (optional "
                f"variant, region, s3_endpoint_url), got {dict(spec)!r}"
            )
        destination = str(spec["destination"])
        if not destination.startswith("s3://"):
            raise MonitoringError(f"sagemaker: destination {destination!r} is not an s3:// URI")
        options = {
            "region": spec.get("region", ""),
            "s3_endpoint_url": spec.get("s3_endpoint_url", ""),
            "endpoint_url": "",
            "max_attempts": 5,
        }
        return options, destination.rstrip("/"), str(spec["endpoint"]), spec.get("variant")
    raise MonitoringError(f"sagemaker: expected a deployment name or a mapping, got {spec!r}")


def read_capture(spec: Any, context: Any) -> Any:
    import pandas as pd
    from botocore.exceptions import BotoCoreError, ClientError

    from mlflow_steward_aws.aws import Clients

    options, destination, endpoint, variant = _where(spec, context)
    bucket, _, prefix = destination.removeprefix("s3://").partition("/")
    key_prefix = "/".join(p for p in (prefix, endpoint, variant) if p) + "/"
    s3 = Clients(options).s3
    since = datetime.fromtimestamp(context.since, UTC) if context.since is not None else None
    frames = []
    skipped = 0
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix)
        keys = [
            obj["Key"]
            for page in pages
            for obj in page.get("Contents", [])
            if obj["Key"].endswith(".jsonl") and (since is None or obj["LastModified"] >= since)
        ]
        for key in sorted(keys):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
            for line in body.splitlines():
                if not line.strip():
                    continue
                try:
                    rows = _event(json.loads(line), since)
                except (ValueError, KeyError, TypeError, AttributeError):
                    skipped += 1
                    continue
                if rows is None:
                    skipped += 1
                    continue
                frames.append(rows)
    except (BotoCoreError, ClientError) as exc:
        raise MonitoringError(
            f"cannot read the capture under s3://{bucket}/{key_prefix}: {exc}"
        ) from exc
    if not frames:
        raise MonitoringError(
            f"no captured request under s3://{bucket}/{key_prefix}"
            + (" in the monitor's window" if since is not None else "")
            + (f" ({skipped} lines skipped: unreadable or older)" if skipped else "")
        )
    return pd.concat(frames, ignore_index=True)


def _decode(part: Mapping[str, Any]) -> tuple[str, str]:
    """(content type, text) of a captured input or output."""
    encoding = str(part.get("encoding", "")).upper()
    data = part["data"]
    kind = str(part.get("observedContentType", "")).lower()
    if encoding == "BASE64":
        data = base64.b64decode(data).decode()
    elif encoding == "CSV":
        kind = kind or "text/csv"
    elif encoding == "JSON":
        kind = kind or "application/json"
    return ("csv" if "csv" in kind else "json"), data


def _rows(part: Mapping[str, Any]) -> Any:
    import pandas as pd

    kind, text = _decode(part)
    if kind == "csv":
        return pd.read_csv(io.StringIO(text))
    payload = json.loads(text)
    if isinstance(payload, dict):
        if "dataframe_split" in payload:
            split = payload["dataframe_split"]
            return pd.DataFrame(split["data"], columns=split.get("columns"))
        if "dataframe_records" in payload:
            return pd.DataFrame(payload["dataframe_records"])
        for key in ("inputs", "instances"):
            if key in payload:
                value = payload[key]
                return pd.DataFrame(value if isinstance(value, list | dict) else [value])
        raise ValueError(f"unknown payload keys {sorted(payload)}")
    return pd.DataFrame(payload)


def _predictions(part: Mapping[str, Any]) -> list[Any] | None:
    kind, text = _decode(part)
    if kind == "csv":
        return [line.strip() for line in text.splitlines() if line.strip()]
    answer = json.loads(text)
    if isinstance(answer, dict):
        answer = answer.get("predictions")
    return answer if isinstance(answer, list) else None


def _event(event: Mapping[str, Any], since: datetime | None) -> Any:
    from mlflow_steward.monitoring import PREDICTION, REQUEST_ID

    meta = event.get("eventMetadata", {})
    when = meta.get("inferenceTime")
    if since is not None and when:
        at = datetime.fromisoformat(str(when).replace("Z", "+00:00"))
        if at < since:
            return None
    data = event["captureData"]
    rows = _rows(data["endpointInput"])
    output = data.get("endpointOutput")
    if output:
        predictions = _predictions(output)
        if predictions is not None and len(predictions) == len(rows):
            rows[PREDICTION] = predictions
    rows[REQUEST_ID] = meta.get("eventId")
    return rows
