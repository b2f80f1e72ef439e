"""Updates with SageMaker's deployment guardrails, followed to their end: a canary, steward's
rollback to the previous endpoint config, an alarm that makes SageMaker roll back, and a rollback
that fails (UpdateRollbackFailed). SageMaker's side of ``UpdateEndpoint`` is the emulator's (see
emulator.py): it records the DeploymentConfig and bakes, reading the alarms' states."""

from __future__ import annotations

import json
import threading
import time

import pytest
from conftest import AWS, Registry, recorded
from mlflow_steward_aws.guardrails import deployment_config
from test_sagemaker_deploy import mlflow_deployments, steward

from mlflow_steward.errors import DeploymentError

ALARM = "fraud-r-5xx"
GUARDED = {"wait": "1s", "watch": "0s", "alarms": ALARM}


def alarm(aws: AWS, state: str) -> None:
    aws.client("cloudwatch").set_alarm_state(
        AlarmName=ALARM, StateValue=state, StateReason="set by the test"
    )


@pytest.fixture(scope="module")
def deployed(aws: AWS, registry: Registry):
    aws.client("cloudwatch").put_metric_alarm(
        AlarmName=ALARM,
        Namespace="AWS/SageMaker",
        MetricName="Invocation5XXErrors",
        Dimensions=[{"Name": "EndpointName", "Value": "fraud-r"}],
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    steward(
        "deploy",
        "create",
        "fraud-r",
        "-m",
        "models:/fraud/1",
        "-t",
        "steward-sagemaker",
        *aws.options(**GUARDED),
    )
    yield "fraud-r"
    aws.emulator.wait_idle()
    steward("deploy", "delete", "fraud-r")
    alarms = aws.client("cloudwatch").describe_alarms()["MetricAlarms"]
    assert [a["AlarmName"] for a in alarms if a["AlarmName"].startswith("steward-")] == []
    assert aws.resources("fraud-r") == {
        k: set() for k in ("models", "configs", "endpoints", "objects")
    }


def serving_config(aws: AWS, name: str) -> str:
    return aws.client("sagemaker").describe_endpoint(EndpointName=name)["EndpointConfigName"]


def test_canary_update_then_rollback_to_the_previous_config(aws, registry, deployed):
    first = registry.runtime(deployed)["config"]
    steward("deploy", "update", deployed, "-m", "models:/fraud/2", "--traffic", "new=10")
    update = aws.emulator.updates[-1]
    assert update["deployment"] == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
                "WaitIntervalInSeconds": 1,
            },
            "TerminationWaitInSeconds": 0,
            "MaximumExecutionTimeoutInSeconds": 3600,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": ALARM}]},
    }
    runtime = registry.runtime(deployed)
    assert aws.resources(deployed) == recorded(runtime)
    assert serving_config(aws, deployed) == runtime["config"] == update["config"] != first
    assert runtime["last_update"]["outcome"] == "serving"
    assert runtime["last_update"]["statuses"][-1] == "InService"
    status = json.loads(steward("deploy", "status", deployed, "--json"))
    assert status["version"] == "2"
    assert status["live"]["traffic"] == {"2": 100}
    # SageMaker's canary ran to its end: a plain `update` now re-resolves v2, not v1.
    assert status["requested"] == "models:/fraud/2"

    made = len(runtime["releases"])
    steward("deploy", "rollback", deployed)
    runtime = registry.runtime(deployed)
    assert serving_config(aws, deployed) == runtime["config"] == first
    assert len(runtime["releases"]) == made  # the previous config again, nothing new made
    assert aws.emulator.updates[-1]["config"] == first
    routing = aws.emulator.updates[-1]["deployment"]["BlueGreenUpdatePolicy"]
    assert routing["TrafficRoutingConfiguration"] == {
        "Type": "ALL_AT_ONCE",
        "WaitIntervalInSeconds": 0,
    }
    assert aws.resources(deployed) == recorded(runtime)
    history = json.loads(steward("deploy", "history", deployed, "--json"))
    assert [h["kind"] for h in history][-2:] == ["canary", "rollback"]


def test_an_alarm_during_the_canary_makes_sagemaker_roll_back(aws, registry, deployed):
    before = serving_config(aws, deployed)
    alarm(aws, "OK")
    result: dict[str, str] = {}

    def update() -> None:
        result["out"] = steward(
            "deploy",
            "update",
            deployed,
            "-m",
            "models:/fraud/2",
            "--traffic",
            "new=20",
            "-C",
            "wait=3s",
            ok=False,
        )

    thread = threading.Thread(target=update)
    thread.start()
    deadline = time.monotonic() + 30
    while not any(s == f"{deployed}: canary 20%" for s in aws.emulator.steps):
        assert time.monotonic() < deadline, aws.emulator.steps
        time.sleep(0.05)
    alarm(aws, "ALARM")
    thread.join(timeout=60)
    alarm(aws, "OK")
    out = result["out"]
    assert "SageMaker rolled the update of fraud-r to v2 back" in out
    assert "RollingBack" in out
    assert serving_config(aws, deployed) == before
    runtime = registry.runtime(deployed)
    assert runtime["config"] == before
    assert runtime["last_update"]["outcome"] == "rolled-back"
    assert "RollingBack" in runtime["last_update"]["statuses"]
    assert aws.resources(deployed) == recorded(runtime)
    got = json.loads(steward("deploy", "get", deployed, "--json"))
    assert got["version"] == "1"
    history = json.loads(steward("deploy", "history", deployed, "--json"))
    assert history[-1]["kind"] == "canary-failed"
    assert "rolled the update" in history[-1]["reason"]


def test_mlflow_deployments_update_with_a_linear_rollout(aws, registry, deployed):
    mlflow_deployments(
        "update",
        "-t",
        "steward-sagemaker",
        "--name",
        deployed,
        "-m",
        "models:/fraud/2",
        "-C",
        "linear_step=50",
        "-C",
        "wait=0s",
    )
    routing = aws.emulator.updates[-1]["deployment"]["BlueGreenUpdatePolicy"]
    assert routing["TrafficRoutingConfiguration"] == {
        "Type": "LINEAR",
        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 50},
        "WaitIntervalInSeconds": 0,
    }
    assert [s for s in aws.emulator.steps if "linear" in s][-2:] == [
        f"{deployed}: linear 50%",
        f"{deployed}: linear 100%",
    ]
    runtime = registry.runtime(deployed)
    assert serving_config(aws, deployed) == runtime["config"]
    assert aws.resources(deployed) == recorded(runtime)
    got = mlflow_deployments("get", "-t", "steward-sagemaker", "--name", deployed)
    assert '"version": "2"' in got or "'version': '2'" in got


def test_error_rate_max_makes_an_alarm_steward_keeps_and_it_rolls_back(aws, registry, deployed):
    """The on-prem option's name: steward creates the CloudWatch alarm (5xx share of the new
    variant), SageMaker watches it; in ALARM during the update, the update is rolled back."""
    alarm_name = f"steward-{deployed}-error-rate"
    before = serving_config(aws, deployed)
    seen = len(aws.emulator.steps)
    result: dict[str, str] = {}

    def update() -> None:
        result["out"] = steward(
            "deploy",
            "update",
            deployed,
            "-m",
            "models:/fraud/1",
            "-C",
            "error_rate_max=0.05",
            "-C",
            "wait=3s",
            "-C",
            "linear_step=0",  # the linear test's option is recorded on the deployment
            ok=False,
        )

    thread = threading.Thread(target=update)
    thread.start()
    deadline = time.monotonic() + 30
    while f"{deployed}: all" not in aws.emulator.steps[seen:]:
        assert time.monotonic() < deadline, (aws.emulator.steps[seen:], result)
        time.sleep(0.05)
    cloudwatch = aws.client("cloudwatch")
    [made] = cloudwatch.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"]
    assert made["Threshold"] == 0.05
    expressions = [m.get("Expression") for m in made["Metrics"]]
    assert "IF(calls > 0, errors / calls, 0)" in expressions
    cloudwatch.set_alarm_state(AlarmName=alarm_name, StateValue="ALARM", StateReason="test")
    thread.join(timeout=60)
    cloudwatch.set_alarm_state(AlarmName=alarm_name, StateValue="OK", StateReason="test")
    assert {"AlarmName": alarm_name} in aws.emulator.updates[-1]["deployment"][
        "AutoRollbackConfiguration"
    ]["Alarms"]
    assert "rolled the update of fraud-r to v1 back" in result["out"]
    assert serving_config(aws, deployed) == before
    assert registry.runtime(deployed)["alarms"] == [alarm_name]


def test_changing_instances_of_the_served_version_makes_a_new_config(aws, registry, deployed):
    before = registry.runtime(deployed)
    served = json.loads(steward("deploy", "get", deployed, "--json"))["version"]
    steward("deploy", "update", deployed, "-m", f"models:/fraud/{served}", "-C", "wait=0s")
    assert registry.runtime(deployed)["config"] == before["config"]  # nothing to do
    steward("deploy", "update", deployed, "-m", f"models:/fraud/{served}", "-C", "instance_count=3")
    runtime = registry.runtime(deployed)
    assert runtime["config"] != before["config"]
    config = aws.client("sagemaker").describe_endpoint_config(EndpointConfigName=runtime["config"])
    assert config["ProductionVariants"][0]["InitialInstanceCount"] == 3
    assert serving_config(aws, deployed) == runtime["config"]
    assert aws.resources(deployed) == recorded(runtime)


def test_update_rollback_failed_is_recorded_and_explained(aws, registry, deployed):
    aws.emulator.fail_rollback = True
    alarm(aws, "ALARM")
    try:
        out = steward("deploy", "update", deployed, "-m", "models:/fraud/1", ok=False)
    finally:
        alarm(aws, "OK")
        aws.emulator.fail_rollback = False
    assert "UpdateRollbackFailed" in out
    assert "steward deploy rollback" in out
    runtime = registry.runtime(deployed)
    assert runtime["last_update"]["outcome"] == "update-rollback-failed"
    assert "rollback to the previous fleet failed" in runtime["last_update"]["reason"]
    status = json.loads(steward("deploy", "status", deployed, "--json"))
    assert status["live"]["health"]["healthy"] is False
    assert "UpdateRollbackFailed" in status["live"]["health"]["detail"]
    # The emulator leaves the endpoint there (the module's fixture deletes it).


@pytest.mark.parametrize(
    ("options", "traffic", "message"),
    [
        ({"linear_step": 20}, 10, "exclude each other"),
        ({"alarms": [f"a{i}" for i in range(11)]}, None, "at most 10"),
        ({"wait": 7200}, None, "0s and 1h"),
        ({"linear_step": 100}, None, "1 to 99"),
    ],
)
def test_guardrails_refuse_what_sagemaker_would(options, traffic, message):
    base = {"wait": 60, "watch": 0, "max_execution": 3600, "linear_step": 0, "alarms": []}
    with pytest.raises(DeploymentError, match=message):
        deployment_config({**base, **options}, traffic)


def test_where_the_endpoint_lives_cannot_change_on_update(aws, registry, deployed):
    before = registry.runtime(deployed)
    for option in ("region=eu-west-1", "endpoint_url=http://127.0.0.1:9", "s3_endpoint_url="):
        out = steward("deploy", "update", deployed, "-C", option, ok=False)
        assert "cannot change" in out
        assert "delete the deployment and create it again" in out
    assert registry.runtime(deployed) == before
    got = json.loads(steward("deploy", "get", deployed, "--json"))
    assert got["options"]["endpoint_url"] == aws.url
