"""Data capture: files in SageMaker's capture format, written to moto's S3 by the test (moto
serves no model, so nothing captures by itself), read by ``steward monitor run`` through the
``sagemaker`` data source: healthy on unshifted inputs, drift on shifted ones, and the rule's
rollback moves @production back and the endpoint back to the previous endpoint config."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest
from conftest import AWS, BUCKET, COLUMNS, POLICIES, Registry, recorded
from test_sagemaker_deploy import steward

NAME = "fraud-cap"

MONITORS = f"""\
monitors:
  fraud-sagemaker:
    model: models:/fraud@production
    data: {{sagemaker: {NAME}}}
    window: since-last-run
    min_samples: 100
    rules:
      - {{when: drift, do: [rollback]}}
"""


def capture(aws: AWS, version: str, rows: np.ndarray, *, encoding: str) -> str:
    """One capture file of 4 requests for variant v<version>, as SageMaker writes it."""
    now = datetime.now(UTC)
    lines = []
    for chunk in np.array_split(rows, 4):
        if encoding == "CSV":
            text = ",".join(COLUMNS) + "\n" + "\n".join(",".join(map(str, r)) for r in chunk)
            data, kind = text, "text/csv"
        else:
            text = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": chunk.tolist()}})
            data, kind = text, "application/json"
            if encoding == "BASE64":
                data = base64.b64encode(text.encode()).decode()
        answer = json.dumps({"predictions": [int(r[0] > 0) for r in chunk]})
        lines.append(
            json.dumps(
                {
                    "captureData": {
                        "endpointInput": {
                            "observedContentType": kind,
                            "mode": "INPUT",
                            "data": data,
                            "encoding": encoding,
                        },
                        "endpointOutput": {
                            "observedContentType": "application/json",
                            "mode": "OUTPUT",
                            "data": answer,
                            "encoding": "JSON",
                        },
                    },
                    "eventMetadata": {
                        "eventId": str(uuid.uuid4()),
                        "inferenceTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    },
                    "eventVersion": "0",
                }
            )
        )
    key = (
        f"steward/capture/{NAME}/v{version}/{now:%Y/%m/%d/%H}/"
        f"{now:%M-%S-%f}-{uuid.uuid4().hex[:8]}.jsonl"
    )
    aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body="\n".join(lines).encode())
    return key


def monitor_run(registry: Registry) -> dict:
    out = steward("monitor", "run", "--monitor", "fraud-sagemaker", "--json")
    [run] = json.loads(out)["runs"]
    return run


def test_capture_feeds_the_monitor_and_drift_rolls_the_endpoint_back(aws, registry):
    from mlflow import MlflowClient

    registry.write_config(POLICIES + MONITORS)
    client = MlflowClient(registry.db_uri, registry.registry_uri)
    try:
        client.set_registered_model_alias("fraud", "production", "1")
        steward(
            "deploy",
            "create",
            NAME,
            "-m",
            "models:/fraud@production",
            "-t",
            "steward-sagemaker",
            *aws.options(data_capture="true", capture_percent="50", wait="0s", watch="0s"),
        )
        first = registry.runtime(NAME)["config"]
        config = aws.client("sagemaker").describe_endpoint_config(EndpointConfigName=first)
        assert config["DataCaptureConfig"]["InitialSamplingPercentage"] == 50
        assert config["DataCaptureConfig"]["DestinationS3Uri"] == f"s3://{BUCKET}/steward/capture"

        client.set_registered_model_alias("fraud", "production", "2")
        steward("deploy", "update", NAME)  # re-resolves models:/fraud@production: v2
        second = registry.runtime(NAME)["config"]
        assert second != first

        rng = np.random.default_rng(7)
        for encoding in ("JSON", "CSV", "BASE64"):
            capture(aws, "2", rng.normal(size=(120, 3)).round(6), encoding=encoding)
        capture(aws, "1", rng.normal(size=(40, 3)) + 5, encoding="JSON")  # v1's: not read
        run = monitor_run(registry)
        assert (run["version"], run["status"]) == ("2", "healthy"), run
        assert run["rows"] == 360
        assert run["actions"] == []

        time.sleep(1.1)  # the next files are newer than the last run
        shifted = rng.normal(size=(240, 3))
        shifted[:, 0] += 1.5
        shifted[:, 1] *= 3
        capture(aws, "2", shifted.round(6), encoding="JSON")
        run = monitor_run(registry)
        assert (run["version"], run["status"]) == ("2", "drift"), run
        assert run["rows"] == 240
        [action] = run["actions"]
        assert action["action"] == "rollback"
        assert action["ok"] is True
        assert "back to v1; deployment fraud-cap now serves v1" in action["result"], action

        assert str(client.get_registered_model("fraud").aliases["production"]) == "1"
        endpoint = aws.client("sagemaker").describe_endpoint(EndpointName=NAME)
        assert endpoint["EndpointConfigName"] == first
        runtime = registry.runtime(NAME)
        assert runtime["config"] == first
        assert aws.resources(NAME) == recorded(runtime)
    finally:
        aws.emulator.wait_idle()
        registry.write_config(POLICIES)
        steward("deploy", "delete", NAME)
        client.set_registered_model_alias("fraud", "production", "1")


def test_a_capture_spec_that_cannot_work_is_refused_clearly(aws, registry):
    from mlflow_steward_aws.capture import read_capture

    from mlflow_steward.errors import MonitoringError
    from mlflow_steward.plugins.types import SourceContext

    context = SourceContext(version=None, since=None, session=None)  # type: ignore[arg-type]
    for spec, message in (
        ({"endpoint": "x"}, "expected {endpoint: NAME, destination"),
        ({"endpoint": "x", "destination": "/tmp/x"}, "not an s3:// URI"),
        (42, "a deployment name or a mapping"),
        (
            {
                "endpoint": "nobody",
                "destination": f"s3://{BUCKET}/steward/capture",
                "s3_endpoint_url": aws.url,
            },
            "no captured request under",
        ),
    ):
        with pytest.raises(MonitoringError, match=re.escape(message)):
            read_capture(spec, context)
