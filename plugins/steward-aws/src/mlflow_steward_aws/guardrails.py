"""The on-prem target's traffic syntax mapped to SageMaker's deployment guardrails.

| steward                         | SageMaker ``DeploymentConfig``                                   |
|---------------------------------|------------------------------------------------------------------|
| (no ``--traffic``)              | ``TrafficRoutingConfiguration.Type = ALL_AT_ONCE``               |
| ``--traffic new=10``            | ``CANARY``, ``CanarySize = {CAPACITY_PERCENT, 10}``              |
| ``linear_step: 20``             | ``LINEAR``, ``LinearStepSize = {CAPACITY_PERCENT, 20}``          |
| ``wait: 5m``                    | ``WaitIntervalInSeconds = 300`` (baking after each shift)        |
| ``watch: 30s``                  | ``TerminationWaitInSeconds = 30`` (old fleet kept, alarms read)  |
| ``max_execution: 1h``           | ``MaximumExecutionTimeoutInSeconds = 3600``                      |
| ``alarms: [a, b]``              | ``AutoRollbackConfiguration.Alarms = [{AlarmName: a}, ...]``     |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlflow_steward.errors import DeploymentError

MAX_ALARMS = 10


def deployment_config(options: Mapping[str, Any], traffic: int | None) -> dict[str, Any]:
    """The ``DeploymentConfig`` of an ``UpdateEndpoint`` call; raises DeploymentError on values
    SageMaker would refuse (so nothing is created first)."""
    wait = int(options["wait"])
    watch = int(options["watch"])
    timeout = int(options["max_execution"])
    step = int(options["linear_step"])
    alarms = list(options["alarms"])
    if not 0 <= wait <= 3600:
        raise DeploymentError(f"wait={wait}s: SageMaker bakes between 0s and 1h per shift")
    if not 0 <= watch <= 3600:
        raise DeploymentError(f"watch={watch}s: SageMaker keeps the old fleet 0s to 1h")
    if not 600 <= timeout <= 28800:
        raise DeploymentError(
            f"max_execution={timeout}s: SageMaker allows 600s (10m) to 28800s (8h)"
        )
    if len(alarms) > MAX_ALARMS:
        raise DeploymentError(
            f"alarms: {len(alarms)} given; SageMaker watches at most {MAX_ALARMS} per update"
        )
    if traffic is not None and step:
        raise DeploymentError(
            "--traffic new=PERCENT (a canary) and linear_step (linear shifts) exclude each "
            "other; give one"
        )
    if not 0 <= step < 100:
        raise DeploymentError(f"linear_step={step}: give a percentage from 1 to 99 (0: off)")
    routing: dict[str, Any] = {"WaitIntervalInSeconds": wait}
    if traffic is not None and traffic < 100:
        routing.update(Type="CANARY", CanarySize={"Type": "CAPACITY_PERCENT", "Value": traffic})
    elif step:
        routing.update(Type="LINEAR", LinearStepSize={"Type": "CAPACITY_PERCENT", "Value": step})
    else:
        routing["Type"] = "ALL_AT_ONCE"
    config: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": watch,
            "MaximumExecutionTimeoutInSeconds": timeout,
        }
    }
    if alarms:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in alarms]}
    return config


def describe(config: Mapping[str, Any]) -> str:
    """One line: ``canary 10% (bake 300s), watch 30s, alarms a, b``."""
    policy = config["BlueGreenUpdatePolicy"]
    routing = policy["TrafficRoutingConfiguration"]
    kind = routing["Type"]
    wait = routing["WaitIntervalInSeconds"]
    if kind == "CANARY":
        text = f"canary {routing['CanarySize']['Value']}% (bake {wait}s), then all"
    elif kind == "LINEAR":
        text = f"linear steps of {routing['LinearStepSize']['Value']}% (bake {wait}s each)"
    else:
        text = f"all at once (bake {wait}s)"
    text += f", old fleet kept {policy['TerminationWaitInSeconds']}s"
    alarms = [a["AlarmName"] for a in config.get("AutoRollbackConfiguration", {}).get("Alarms", [])]
    return text + (f", alarms {', '.join(alarms)}" if alarms else ", no alarms")
