"""``steward deploy ... -t steward-sagemaker`` and ``mlflow deployments ... -t steward-sagemaker``
against moto's threaded server over HTTP (real boto3): after every step, the models, endpoint
configs, endpoints and S3 objects moto holds are the ones steward recorded."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from click.testing import CliRunner
from conftest import AWS, BUCKET, Registry, recorded

from mlflow_steward.cli.main import cli


def steward(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    out = result.output
    if ok:
        assert result.exit_code == 0, out
    else:
        assert result.exit_code != 0, out
    return out


def mlflow_deployments(*args: str, ok: bool = True) -> str:
    from mlflow.deployments.cli import commands

    result = CliRunner().invoke(commands, list(args))
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    else:
        assert result.exit_code != 0, result.output
    return result.output + (str(result.exception) if result.exception else "")


def assert_matches(aws: AWS, registry: Registry, name: str) -> dict:
    runtime = registry.runtime(name)
    assert aws.resources(name) == recorded(runtime)
    return runtime


def test_option_checker_refuses_bad_values_before_anything_is_made(aws, registry):
    before = aws.resources()
    out = steward(
        "deploy",
        "create",
        "bad-opts",
        "-m",
        "models:/fraud@production",
        "-t",
        "steward-sagemaker",
        *aws.options(instance_count="many"),
        ok=False,
    )
    assert "instance_count" in out
    assert "whole number" in out
    out = steward(
        "deploy",
        "create",
        "bad-opts",
        "-m",
        "models:/fraud@production",
        "-t",
        "steward-sagemaker",
        *aws.options(bukket="x"),
        ok=False,
    )
    assert "did you mean 'bucket'" in out
    out = steward(
        "deploy",
        "create",
        "bad_name",
        "-m",
        "models:/fraud@production",
        "-t",
        "steward-sagemaker",
        *aws.options(),
        ok=False,
    )
    assert "cannot name a SageMaker endpoint" in out
    out = steward(
        "deploy",
        "create",
        "bad-opts",
        "-m",
        "models:/fraud@production",
        "-t",
        "steward-sagemaker",
        *aws.options(max_execution="1m"),
        ok=False,
    )
    assert "600s" in out
    assert aws.resources() == before
    assert "bad-opts" not in steward("deploy", "list")


def test_create_packages_to_s3_records_every_resource_and_delete_removes_them(aws, registry):
    steward(
        "deploy",
        "create",
        "fraud-a",
        "-m",
        "models:/fraud@production",
        "-t",
        "steward-sagemaker",
        *aws.options(),
    )
    runtime = assert_matches(aws, registry, "fraud-a")
    (release,) = runtime["releases"]
    assert release["version"] == "1"
    assert runtime["config"] == release["config"]
    sm = aws.client("sagemaker")
    endpoint = sm.describe_endpoint(EndpointName="fraud-a")
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == release["config"]
    model = sm.describe_model(ModelName=release["model"])
    assert model["PrimaryContainer"]["ModelDataUrl"] == release["model_data"]
    assert model["ExecutionRoleArn"].endswith("role/steward-sagemaker")
    # The archive is the model folder's contents at its root (what MLflow's image serves).
    key = release["model_data"].removeprefix(f"s3://{BUCKET}/")
    body = aws.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        names = archive.getnames()
    assert "MLmodel" in names
    assert {"model.skops", "model.pkl"} & set(names), names
    listed = json.loads(steward("deploy", "list", "--json"))
    assert [(d["name"], d["status"], d["version"]) for d in listed] == [("fraud-a", "serving", "1")]
    status = json.loads(steward("deploy", "status", "fraud-a", "--json"))
    assert status["live"]["health"]["healthy"] is True
    assert status["live"]["traffic"] == {"1": 100}

    # Scoring: moto answers InvokeEndpoint with the results queued on its API (it runs no image).
    import requests

    requests.post(
        f"{aws.url}/moto-api/static/sagemaker/endpoint-results",
        json={"results": [{"Body": '{"predictions": [1, 0]}', "ContentType": "application/json"}]},
        timeout=10,
    ).raise_for_status()
    payload = registry.root / "input.json"
    payload.write_text(json.dumps({"columns": ["x0", "x1", "x2"], "data": [[1, 0, 0], [-1, 0, 0]]}))
    answer = json.loads(steward("deploy", "predict", "fraud-a", "-i", str(payload)))
    assert answer == [{"0": 1}, {"0": 0}]

    steward("deploy", "delete", "fraud-a")
    assert aws.resources("fraud-a") == {
        k: set() for k in ("models", "configs", "endpoints", "objects")
    }


def test_a_create_refused_midway_leaves_nothing_behind(aws, registry):
    """moto refuses the endpoint config (an instance type SageMaker does not have) after the
    archive and the model were made: both are deleted, and the failure is recorded."""
    out = steward(
        "deploy",
        "create",
        "fraud-half",
        "-m",
        "models:/fraud/1",
        "-t",
        "steward-sagemaker",
        *aws.options(instance_type="ml.nonexistent.huge"),
        ok=False,
    )
    assert "creating endpoint config" in out
    assert "ml.nonexistent.huge" in out
    assert aws.resources("fraud-half") == {
        k: set() for k in ("models", "configs", "endpoints", "objects")
    }
    runtime = registry.runtime("fraud-half")
    assert runtime["releases"] == []
    history = json.loads(steward("deploy", "history", "fraud-half", "--json"))
    assert history[-1]["kind"] == "create-failed"
    steward("deploy", "delete", "fraud-half")


def test_an_endpoint_that_fails_is_explained_and_cleaned_up(aws, registry):
    aws.emulator.fail_next_endpoint = (
        "The primary container for production variant v1 did not pass the ping health check."
    )
    out = steward(
        "deploy",
        "create",
        "fraud-fails",
        "-m",
        "models:/fraud/1",
        "-t",
        "steward-sagemaker",
        *aws.options(),
        ok=False,
    )
    assert "did not pass the ping health check" in out
    assert "image_uri" in out
    assert aws.resources("fraud-fails") == {
        k: set() for k in ("models", "configs", "endpoints", "objects")
    }
    steward("deploy", "delete", "fraud-fails")


def test_a_refusing_policy_creates_nothing_on_aws(aws, registry):
    registry.write_config(
        "policies:\n"
        "  - use: require-signature\n"
        "  - use: required-tags\n"
        "    when: {action: deploy}\n"
        "    with: {tags: [security-review]}\n"
    )
    try:
        before = aws.resources()
        out = steward(
            "deploy",
            "create",
            "fraud-denied",
            "-m",
            "models:/fraud/1",
            "-t",
            "steward-sagemaker",
            *aws.options(),
            ok=False,
        )
        assert "security-review" in out
        assert aws.resources() == before
        assert "fraud-denied" not in steward("deploy", "list")
        audit = steward("audit", "log", "--json")
        assert "fraud-denied" in audit
    finally:
        from conftest import POLICIES

        registry.write_config(POLICIES)


def test_mlflow_deployments_cli_create_get_list_delete(aws, registry):
    options = aws.options()
    mlflow_deployments(
        "create",
        "-t",
        "steward-sagemaker",
        "--name",
        "fraud-m",
        "-m",
        "models:/fraud/2",
        *options,
    )
    runtime = assert_matches(aws, registry, "fraud-m")
    got = mlflow_deployments("get", "-t", "steward-sagemaker", "--name", "fraud-m")
    assert "serving" in got
    assert runtime["config"] in got
    listed = mlflow_deployments("list", "-t", "steward-sagemaker")
    assert "fraud-m" in listed
    helped = mlflow_deployments("help", "-t", "steward-sagemaker")
    assert "image_uri" in helped
    assert "alarms" in helped
    mlflow_deployments("delete", "-t", "steward-sagemaker", "--name", "fraud-m")
    assert aws.resources("fraud-m") == {
        k: set() for k in ("models", "configs", "endpoints", "objects")
    }
    assert "fraud-m" not in mlflow_deployments("list", "-t", "steward-sagemaker")


@pytest.mark.parametrize(
    "code", ["AccessDeniedException", "ThrottlingException", "ResourceLimitExceeded"]
)
def test_aws_errors_say_what_to_do(code):
    from botocore.exceptions import ClientError
    from mlflow_steward_aws.aws import explain

    error = ClientError({"Error": {"Code": code, "Message": "no"}}, "CreateEndpoint")
    text = str(explain(error, "creating endpoint x"))
    assert text.startswith("creating endpoint x: ")
    hint = {
        "AccessDeniedException": "least-privilege IAM policy",
        "ThrottlingException": "max_attempts",
        "ResourceLimitExceeded": "quota increase",
    }[code]
    assert hint in text


def test_throttling_is_retried_by_botocore_and_explained_when_it_persists(aws, registry):
    aws.emulator.throttle_endpoint_configs = 2
    steward(
        "deploy",
        "create",
        "fraud-slow",
        "-m",
        "models:/fraud/1",
        "-t",
        "steward-sagemaker",
        *aws.options(max_attempts="3"),
    )
    assert aws.emulator.throttle_endpoint_configs == 0  # both throttled calls were retried
    assert_matches(aws, registry, "fraud-slow")
    steward("deploy", "delete", "fraud-slow")

    aws.emulator.throttle_endpoint_configs = 5
    try:
        out = steward(
            "deploy",
            "create",
            "fraud-slow",
            "-m",
            "models:/fraud/1",
            "-t",
            "steward-sagemaker",
            *aws.options(max_attempts="2"),
            ok=False,
        )
    finally:
        left, aws.emulator.throttle_endpoint_configs = aws.emulator.throttle_endpoint_configs, 0
    assert left == 3  # two attempts, as configured
    assert "AWS throttled the request (ThrottlingException)" in out
    assert "raise -C max_attempts" in out
    assert aws.resources("fraud-slow") == {
        k: set() for k in ("models", "configs", "endpoints", "objects")
    }
    steward("deploy", "delete", "fraud-slow")


def test_artifacts_changed_after_registration_are_not_deployed(aws, registry):
    """The content digest recorded at registration binds the deploy: a version whose files were
    replaced on the artifact store is refused before anything is made on AWS."""
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    X = pd.DataFrame(np.eye(3), columns=["x0", "x1", "x2"])
    model = LogisticRegression().fit(X, [0, 1, 1])
    mlflow.set_tracking_uri(registry.db_uri)
    mlflow.set_registry_uri(registry.registry_uri)
    try:
        with mlflow.start_run():
            logged = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(X, model.predict(X)),
                pip_requirements=mlflow.sklearn.get_default_pip_requirements(),
            )
        version = mlflow.register_model(logged.model_uri, "fraud-tampered").version
        client = MlflowClient(registry.db_uri, registry.registry_uri)
        location = client.get_model_version_download_uri("fraud-tampered", version)
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        import os

        os.environ.update(registry.env())
    from pathlib import Path
    from urllib.parse import urlparse

    requirements = Path(urlparse(location).path) / "requirements.txt"
    requirements.write_text(requirements.read_text() + "evil-package==1.0\n")
    before = aws.resources()
    out = steward(
        "deploy",
        "create",
        "fraud-tampered",
        "-m",
        f"models:/fraud-tampered/{version}",
        "-t",
        "steward-sagemaker",
        *aws.options(),
        ok=False,
    )
    assert "content-digest" in out
    assert "requirements.txt" in out
    assert aws.resources() == before
    assert "fraud-tampered" not in steward("deploy", "list")
