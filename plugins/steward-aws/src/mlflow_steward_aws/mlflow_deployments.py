"""``mlflow deployments ... -t steward-sagemaker``: MLflow's CLI reaches the target through
steward's deployment host (the same governance, state and audit log as ``steward deploy``).

MLflow wants ``run_local``, ``target_help`` and exactly one ``BaseDeploymentClient`` subclass
among this module's members: steward's client (which takes the target from the URI's scheme) is
that subclass; the base class is not imported here.
"""

from __future__ import annotations

from mlflow_steward.deployment.mlflow_plugin import StewardDeploymentClient, run_local
from mlflow_steward_aws import TARGET

__all__ = ["StewardDeploymentClient", "run_local", "target_help"]


def target_help() -> str:
    """``mlflow deployments help -t steward-sagemaker``: the target's text and its options,
    generated from their declarations (the same as ``steward deploy help -t steward-sagemaker``)."""
    from mlflow_steward.deployment.host import target_help as one_target
    from mlflow_steward.plugins.manager import get_plugin_manager

    hooks = get_plugin_manager().hooks
    registered = hooks.deployment_target(TARGET)
    return one_target(registered, describe=hooks.describe_plugin(registered.plugin))
