"""``rollout: manual``: two production variants, weights stepped with
UpdateEndpointWeightsAndCapacities (moto's own call), then promote or roll back."""

from __future__ import annotations

import json

from conftest import AWS, Registry, recorded
from test_sagemaker_deploy import steward

NAME = "fraud-w"


def variants(aws: AWS) -> dict[str, float]:
    described = aws.client("sagemaker").describe_endpoint(EndpointName=NAME)
    return {v["VariantName"]: v["CurrentWeight"] for v in described["ProductionVariants"]}


def test_two_variants_stepped_by_hand_then_promoted_then_rolled_back(aws: AWS, registry: Registry):
    steward(
        "deploy",
        "create",
        NAME,
        "-m",
        "models:/fraud/1",
        "-t",
        "steward-sagemaker",
        *aws.options(rollout="manual", watch="0s"),
    )
    try:
        first = registry.runtime(NAME)["config"]
        steward("deploy", "update", NAME, "-m", "models:/fraud/2", "--traffic", "new=10")
        assert variants(aws) == {"v1": 90.0, "v2": 10.0}
        status = json.loads(steward("deploy", "status", NAME, "--json"))
        assert status["live"]["traffic"] == {"1": 90, "2": 10}
        assert status["version"] == "1"
        assert aws.resources(NAME) == recorded(registry.runtime(NAME))

        configs = aws.resources(NAME)["configs"]
        steward("deploy", "update", NAME, "-m", "models:/fraud/2", "--traffic", "new=50")
        assert variants(aws) == {"v1": 50.0, "v2": 50.0}
        assert aws.resources(NAME)["configs"] == configs  # weights moved, nothing recreated
        out = steward("deploy", "update", NAME, "-m", "models:/fraud/1", ok=False)
        assert "a canary of v2 is running" in out

        steward("deploy", "promote-canary", NAME)
        assert variants(aws) == {"v2": 1.0}
        runtime = registry.runtime(NAME)
        assert "canary" not in runtime
        assert json.loads(steward("deploy", "get", NAME, "--json"))["version"] == "2"

        steward("deploy", "rollback", NAME)
        assert variants(aws) == {"v1": 1.0}
        runtime = registry.runtime(NAME)
        assert runtime["config"] == first
        assert aws.resources(NAME) == recorded(runtime)

        steward("deploy", "update", NAME, "-m", "models:/fraud/2", "--traffic", "new=20")
        assert variants(aws) == {"v1": 80.0, "v2": 20.0}
        steward("deploy", "rollback", NAME)  # drops the canary
        assert variants(aws) == {"v1": 1.0}
        assert json.loads(steward("deploy", "status", NAME, "--json"))["live"]["traffic"] == {
            "1": 100
        }
    finally:
        aws.emulator.wait_idle()
        steward("deploy", "delete", NAME)
    assert aws.resources(NAME) == {k: set() for k in ("models", "configs", "endpoints", "objects")}
