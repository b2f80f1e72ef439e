"""``rollout: manual``: two production variants whose weights steward sets, for teams that step
traffic themselves.

- ``update --traffic new=10``: an endpoint config with the served version's variant (weight 90)
  and the new version's (weight 10), applied with ``UpdateEndpoint`` (no guardrails);
- ``update --traffic new=50`` again for the same version: ``UpdateEndpointWeightsAndCapacities``
  moves the weights, nothing is recreated;
- ``promote-canary``: the new version's own one-variant config; ``rollback``: the served
  version's.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from mlflow_steward.errors import DeploymentError
from mlflow_steward.plugins import DeploymentInfo, ResolvedModel
from mlflow_steward_aws.aws import call
from mlflow_steward_aws.guardrails import deployment_config

if TYPE_CHECKING:
    from mlflow_steward_aws.client import SageMakerClient


def _plain(info: DeploymentInfo) -> dict[str, Any]:
    """All at once, no bake: the weights are the rollout."""
    return deployment_config({**info.options, "wait": 0, "linear_step": 0, "alarms": []}, None)


def manual_update(
    client: SageMakerClient, info: DeploymentInfo, model: ResolvedModel, traffic: int | None
) -> DeploymentInfo:
    clients = client._clients(info)
    canary = info.runtime.get("canary")
    if canary is not None:
        if canary["version"] != model.version or traffic is None or traffic >= 100:
            raise DeploymentError(
                f"a canary of v{canary['version']} is running on {info.name}; step it with "
                "--traffic new=PERCENT, or promote or roll it back first"
            )
        return _weights(client, info, canary, traffic)
    if traffic is None or traffic >= 100 or model.version == info.version:
        release = client._find_release(info, model.version)
        if release is None or client._config_changed(info, release, clients):
            release = client._release(info, model, clients)
        return client._shift(info, model, release, _plain(info), clients, doing="updating")
    stable = client._find_release(info, info.version)
    if stable is None:
        raise DeploymentError(f"no recorded release of v{info.version} on {info.name}")
    fresh = client._find_release(info, model.version)
    if fresh is None or client._config_changed(info, fresh, clients):
        fresh = client._release(info, model, clients)
    suffix = f"-split-{secrets.token_hex(3)}"
    name = info.name[: 63 - len(suffix)].rstrip("-") + suffix
    options = info.options

    def variant(release: dict[str, Any], weight: int) -> dict[str, Any]:
        return {
            "VariantName": release["variant"],
            "ModelName": release["model"],
            "InitialInstanceCount": int(options["instance_count"]),
            "InstanceType": options["instance_type"],
            "InitialVariantWeight": float(weight),
        }

    split: dict[str, Any] = {"version": f"{info.version}+{model.version}"}
    info.runtime["releases"].append(split)
    extra: dict[str, Any] = {}
    capture = client._capture_config(info)
    if capture is not None:
        extra["DataCaptureConfig"] = capture
    call(
        f"creating endpoint config {name}",
        lambda: clients.sagemaker.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[variant(stable, 100 - traffic), variant(fresh, traffic)],
            **extra,
        ),
    )
    split["config"] = name
    client._save(info)
    old = info.runtime.get("config")
    client._say(
        f"two variants on {info.name}: v{info.version} {100 - traffic}%, "
        f"v{model.version} {traffic}%"
    )
    call(
        f"updating endpoint {info.name}",
        lambda: clients.sagemaker.update_endpoint(EndpointName=info.name, EndpointConfigName=name),
    )
    described, seen = client._follow(info, clients, "splitting")
    if described["EndpointStatus"] != "InService" or described["EndpointConfigName"] != name:
        raise DeploymentError(
            f"the two-variant config of {info.name} did not take over (statuses "
            f"{' -> '.join(seen)}: {described.get('FailureReason') or 'no reason given'})"
        )
    info.runtime.update(
        config=name,
        canary={
            "version": model.version,
            "stable_config": old,
            "config": fresh["config"],
            "variants": {info.version: stable["variant"], model.version: fresh["variant"]},
        },
    )
    info.traffic = {info.version: 100 - traffic, model.version: traffic}
    client._save(info)
    return info


def _weights(
    client: SageMakerClient, info: DeploymentInfo, canary: dict[str, Any], traffic: int
) -> DeploymentInfo:
    clients = client._clients(info)
    count = int(info.options["instance_count"])
    variants = canary["variants"]
    stable = next(v for v in variants if v != canary["version"])
    weights = {stable: 100 - traffic, canary["version"]: traffic}
    client._say(f"weights on {info.name}: " + ", ".join(f"v{v} {w}%" for v, w in weights.items()))
    call(
        f"setting the weights of endpoint {info.name}",
        lambda: clients.sagemaker.update_endpoint_weights_and_capacities(
            EndpointName=info.name,
            DesiredWeightsAndCapacities=[
                {
                    "VariantName": variants[v],
                    "DesiredWeight": float(w),
                    "DesiredInstanceCount": count,
                }
                for v, w in weights.items()
            ],
        ),
    )
    described, seen = client._follow(info, clients, "reweighting")
    if described["EndpointStatus"] != "InService":
        raise DeploymentError(
            f"the weights of {info.name} did not apply (statuses {' -> '.join(seen)})"
        )
    info.traffic = weights
    client._save(info)
    return info


def manual_promote(client: SageMakerClient, info: DeploymentInfo) -> DeploymentInfo:
    canary = info.runtime.get("canary")
    if canary is None:
        raise DeploymentError(f"deployment {info.name!r} has no canary to promote")
    clients = client._clients(info)
    release = client._find_release(info, canary["version"])
    assert release is not None
    model = ResolvedModel(
        info.model, canary["version"], f"models:/{info.model}/{canary['version']}"
    )
    info.runtime.pop("canary")
    info.runtime["config"] = canary["stable_config"]
    return client._shift(info, model, release, _plain(info), clients, doing="promoting")


def manual_rollback(
    client: SageMakerClient, info: DeploymentInfo, model: ResolvedModel | None
) -> DeploymentInfo:
    canary = info.runtime.get("canary")
    clients = client._clients(info)
    if model is None:
        if canary is None:
            raise DeploymentError(f"deployment {info.name!r} has no canary to roll back")
        model = ResolvedModel(info.model, info.version, f"models:/{info.model}/{info.version}")
    release = client._find_release(info, model.version)
    if release is None or client._config_changed(info, release, clients):
        release = client._release(info, model, clients)
    if canary is not None:
        info.runtime.pop("canary")
        info.runtime["config"] = canary["stable_config"]
    return client._shift(info, model, release, _plain(info), clients, doing="rolling back")
