"""mlflow-steward: governance, deployment and monitoring for MLflow, as a pluggy plugin host.

Importing this package is cheap: MLflow, pandas and the built-in plugins are imported only when a
function that needs them is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

__version__ = "0.2.0"

PROJECT_NAME = "mlflow_steward"
#: Marks a function or method as an implementation of a steward hook.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

if TYPE_CHECKING:
    from mlflow_steward.plugins.events import Decision
    from mlflow_steward.plugins.manager import StewardPluginManager

__all__ = [
    "Decision",
    "__version__",
    "check",
    "create_plugin_manager",
    "hookimpl",
    "log_baseline",
    "register_plugin",
]


def __getattr__(name: str) -> Any:
    # ``Decision`` is loaded on first use, so that importing the package stays cheap.
    if name == "Decision":
        from mlflow_steward.plugins.events import Decision

        return Decision
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def create_plugin_manager(**kwargs: Any) -> StewardPluginManager:
    """Build a fresh plugin manager; see :func:`mlflow_steward.plugins.manager.create_plugin_manager`."""
    from mlflow_steward.plugins.manager import create_plugin_manager as _create

    return _create(**kwargs)


def register_plugin(plugin: object) -> None:
    """Enforce an in-process plugin in every governed registry call of this process.

    See :func:`mlflow_steward.plugins.manager.register_plugin`.
    """
    from mlflow_steward.plugins.manager import register_plugin as _register

    _register(plugin)


def check(model_uri: str, **kwargs: Any) -> Decision:
    """Ask every applicable policy about an action without writing anything.

    See :func:`mlflow_steward.governance.api.check` for the arguments.
    """
    from mlflow_steward.governance.api import check as _check

    return _check(model_uri, **kwargs)


def log_baseline(
    X: Any, y: Any = None, predictions: Any = None, model_info: Any = None, **kwargs: Any
) -> str:
    """Store the reference data monitoring compares with, with a logged model.

    See :func:`mlflow_steward.monitoring.baseline.log_baseline`.
    """
    from mlflow_steward.monitoring.baseline import log_baseline as _log

    return _log(X, y, predictions, model_info, **kwargs)
