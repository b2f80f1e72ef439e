"""The plugin host: hook specifications, the contract types and the plugin manager.

Plugin authors import every contract name from here (``from mlflow_steward.plugins import
ActionEvent, Policy, PolicyVerdict``). The names are loaded on first use (module ``__getattr__``),
so importing this package costs nothing: ``steward --help`` imports neither MLflow nor pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow_steward import hookimpl
    from mlflow_steward.errors import DeploymentError, MonitoringError, StewardError
    from mlflow_steward.monitoring.sketches import ColumnSketch, SketchedWindow
    from mlflow_steward.plugins.events import (
        DEFAULT_WORKSPACE,
        DIGEST_TAG,
        ActionEvent,
        Approval,
        Decision,
        FactUnavailable,
        ModelFacts,
        PolicyOutcome,
    )
    from mlflow_steward.plugins.services import GovernedRegistry, MonitorConfig, StewardServices
    from mlflow_steward.plugins.targets import (
        DeploymentContext,
        DeploymentEvent,
        DeploymentInfo,
        DeploymentRecords,
        ResolvedModel,
        TargetClient,
    )
    from mlflow_steward.plugins.types import (
        ActionContext,
        Alert,
        Alerter,
        CardSection,
        Command,
        DataSource,
        DeploymentTarget,
        Detector,
        DetectorResult,
        MonitorAction,
        Option,
        Policy,
        PolicyVerdict,
        SourceContext,
    )

#: Where each public name is defined.
_HOMES = {
    "hookimpl": "mlflow_steward",
    **dict.fromkeys(
        ("DeploymentError", "MonitoringError", "StewardError"), "mlflow_steward.errors"
    ),
    **dict.fromkeys(("ColumnSketch", "SketchedWindow"), "mlflow_steward.monitoring.sketches"),
    **dict.fromkeys(
        (
            "DEFAULT_WORKSPACE",
            "DIGEST_TAG",
            "ActionEvent",
            "Approval",
            "Decision",
            "FactUnavailable",
            "ModelFacts",
            "PolicyOutcome",
        ),
        "mlflow_steward.plugins.events",
    ),
    **dict.fromkeys(
        ("GovernedRegistry", "MonitorConfig", "StewardServices"), "mlflow_steward.plugins.services"
    ),
    **dict.fromkeys(
        (
            "DeploymentContext",
            "DeploymentEvent",
            "DeploymentInfo",
            "DeploymentRecords",
            "ResolvedModel",
            "TargetClient",
        ),
        "mlflow_steward.plugins.targets",
    ),
    **dict.fromkeys(
        (
            "ActionContext",
            "Alert",
            "Alerter",
            "CardSection",
            "Command",
            "DataSource",
            "DeploymentTarget",
            "Detector",
            "DetectorResult",
            "MonitorAction",
            "Option",
            "Policy",
            "PolicyVerdict",
            "SourceContext",
        ),
        "mlflow_steward.plugins.types",
    ),
}

__all__ = [
    "DEFAULT_WORKSPACE",
    "DIGEST_TAG",
    "ActionContext",
    "ActionEvent",
    "Alert",
    "Alerter",
    "Approval",
    "CardSection",
    "ColumnSketch",
    "Command",
    "DataSource",
    "Decision",
    "DeploymentContext",
    "DeploymentError",
    "DeploymentEvent",
    "DeploymentInfo",
    "DeploymentRecords",
    "DeploymentTarget",
    "Detector",
    "DetectorResult",
    "FactUnavailable",
    "GovernedRegistry",
    "ModelFacts",
    "MonitorAction",
    "MonitorConfig",
    "MonitoringError",
    "Option",
    "Policy",
    "PolicyOutcome",
    "PolicyVerdict",
    "ResolvedModel",
    "SketchedWindow",
    "SourceContext",
    "StewardError",
    "StewardServices",
    "TargetClient",
    "hookimpl",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
