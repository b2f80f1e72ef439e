"""mlflow-steward plugin template: one example of every hook kind.

The entry point names this module, so steward registers it as one plugin; it imports each hook
implementation from the module that holds it. Keep the ones you need.
"""

from __future__ import annotations

from steward_team_kit.commands import steward_commands
from steward_team_kit.identity import steward_resolve_actor
from steward_team_kit.monitoring import (
    steward_alerters,
    steward_data_sources,
    steward_detectors,
    steward_monitor_actions,
    steward_retrain,
)
from steward_team_kit.observers import (
    steward_after_decision,
    steward_after_deploy,
    steward_before_deploy,
    steward_on_deploy_error,
    steward_on_policy_error,
)
from steward_team_kit.policies import steward_policies
from steward_team_kit.targets import steward_deployment_targets

__all__ = [
    "steward_after_decision",
    "steward_after_deploy",
    "steward_alerters",
    "steward_before_deploy",
    "steward_commands",
    "steward_data_sources",
    "steward_deployment_targets",
    "steward_detectors",
    "steward_monitor_actions",
    "steward_on_deploy_error",
    "steward_on_policy_error",
    "steward_policies",
    "steward_resolve_actor",
    "steward_retrain",
]
