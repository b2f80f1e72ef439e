"""docs/sagemaker.md's steward.yaml, as the page shows it (only the places that cannot exist here
replaced: the bucket, the account's image and role, the region, the port, the bakes), checked by
``steward config check`` and used to deploy the same model on-prem and to SageMaker with the same
traffic syntax."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import yaml
from conftest import AWS, BUCKET, IMAGE, POLICIES, ROLE, Registry, recorded
from test_sagemaker_deploy import steward

PAGE = Path(__file__).resolve().parents[3] / "docs" / "sagemaker.md"


def page_yaml(key: str) -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", PAGE.read_text(), re.S)
    [block] = [b for b in blocks if b.startswith(f"{key}:")]
    return block


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_page_steward_yaml_checks_and_deploys_on_prem_and_to_sagemaker(
    aws: AWS, registry: Registry
):
    text = page_yaml("deployments")
    for old, new in {
        "ml-models": BUCKET,
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlflow-pyfunc:3.17.2": IMAGE,
        "arn:aws:iam::123456789012:role/steward-sagemaker-execution": ROLE,
        "eu-west-1": "us-east-1",
        "port: 8080": f"port: {free_port()}",
        "wait: 5m": "wait: 1s",
        "watch: 30s": "watch: 1s",
    }.items():
        assert old in text, old
        text = text.replace(old, new)
    config = yaml.safe_load(text)
    config["deployments"]["fraud-cloud"].update(
        endpoint_url=aws.url, s3_endpoint_url=aws.url, poll_interval="0.1s"
    )
    cloudwatch = aws.client("cloudwatch")
    for alarm in config["deployments"]["fraud-cloud"]["alarms"]:
        cloudwatch.put_metric_alarm(
            AlarmName=alarm,
            Namespace="AWS/SageMaker",
            MetricName="Invocation5XXErrors",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
    registry.write_config(POLICIES + yaml.safe_dump(config))
    try:
        steward("config", "check")
        targets = steward("deploy", "targets")
        assert "steward-sagemaker" in targets
        assert "steward-aws" in targets
        assert "watch (duration)" in steward("deploy", "help", "-t", "steward-sagemaker")

        for name in ("fraud-onprem", "fraud-cloud"):
            steward("deploy", "create", name, "-m", "models:/fraud@production")
        for name in ("fraud-onprem", "fraud-cloud"):
            steward("deploy", "update", name, "-m", "models:/fraud/2", "--traffic", "new=10")

        onprem = json.loads(steward("deploy", "status", "fraud-onprem", "--json"))
        assert onprem["live"]["traffic"] == {"1": 90, "2": 10}  # a canary until promoted
        routing = aws.emulator.updates[-1]["deployment"]["BlueGreenUpdatePolicy"]
        assert routing["TrafficRoutingConfiguration"]["CanarySize"] == {
            "Type": "CAPACITY_PERCENT",
            "Value": 10,
        }
        assert routing["TerminationWaitInSeconds"] == 1  # watch: the same option, both targets
        assert aws.emulator.updates[-1]["deployment"]["AutoRollbackConfiguration"] == {
            "Alarms": [{"AlarmName": "fraud-cloud-5xx"}, {"AlarmName": "fraud-cloud-latency"}]
        }
        cloud = json.loads(steward("deploy", "status", "fraud-cloud", "--json"))
        assert cloud["live"]["traffic"] == {"2": 100}  # SageMaker's canary ran to its end
        assert aws.resources("fraud-cloud") == recorded(registry.runtime("fraud-cloud"))
        capture = aws.client("sagemaker").describe_endpoint_config(
            EndpointConfigName=registry.runtime("fraud-cloud")["config"]
        )["DataCaptureConfig"]
        assert capture["InitialSamplingPercentage"] == 20
    finally:
        aws.emulator.wait_idle()
        for name in ("fraud-onprem", "fraud-cloud"):
            if name in steward("deploy", "list"):
                steward("deploy", "delete", name)
        registry.write_config(POLICIES)
    assert aws.resources("fraud-cloud") == {
        k: set() for k in ("models", "configs", "endpoints", "objects")
    }


def test_the_page_monitor_yaml_checks(registry: Registry):
    registry.write_config(POLICIES + page_yaml("monitors"))
    try:
        steward("config", "check")
    finally:
        registry.write_config(POLICIES)
