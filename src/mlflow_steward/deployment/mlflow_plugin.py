"""MLflow's ``mlflow deployments`` reaches steward's targets through this module.

Entry points in group ``mlflow.deployments``: one per built-in target (``-t steward-onprem``) and a
generic ``steward`` (``-t steward:/<target>``) that reaches every registered target, third-party
ones included. Both land in the same :class:`~mlflow_steward.deployment.host.DeploymentHost` as
``steward deploy``: the same governance, state and audit log.

MLflow requires exactly one ``BaseDeploymentClient`` subclass among this module's members, so the
base class is reached through its module.
"""

from __future__ import annotations

import sys
from typing import Any

from mlflow.deployments import base as _mlflow_base
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, PERMISSION_DENIED

from mlflow_steward.errors import StewardError

GENERIC = "steward"


def _target_name(target_uri: str) -> str:
    scheme, _, rest = target_uri.partition(":")
    if scheme != GENERIC:
        return scheme
    name = rest.strip("/")
    if not name:
        raise MlflowException(
            "name the target after 'steward:/', e.g. -t steward:/steward-onprem "
            "(see `steward deploy targets`)",
            error_code=INVALID_PARAMETER_VALUE,
        )
    return name


def _uri_options(target_uri: str) -> dict[str, str]:
    """``-t steward-edge:/srv/channels/site-42``: the text after a built-in target's name is its
    ``channel`` option (the only target option that names a place)."""
    scheme, _, rest = target_uri.partition(":")
    return {"channel": rest} if scheme != GENERIC and rest else {}


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


class StewardDeploymentClient(_mlflow_base.BaseDeploymentClient):
    """``mlflow deployments ... -t steward-onprem`` or ``-t steward:/<target>``."""

    def __init__(self, target_uri: str) -> None:
        super().__init__(target_uri)
        self.target_name = _target_name(target_uri)
        self._host: Any = None
        # An unknown target fails here, listing the known ones.
        self.registered = _call(lambda: self.host.target(self.target_name))
        self.uri_options = _uri_options(target_uri)

    def _with_uri_options(self, config: Any) -> dict[str, Any]:
        """``config`` with the options the target URI names (checked here, not in __init__:
        MLflow's CLI prints a traceback for errors raised while it builds the client)."""
        if self.uri_options and "channel" not in {o.name for o in self.registered.target.options}:
            raise MlflowException(
                f"-t {self.target_uri}: target {self.target_name!r} takes no location after its "
                f"name; use -t {self.target_name} and options in -C key=value",
                error_code=INVALID_PARAMETER_VALUE,
            )
        out = dict(config or {})
        for key, value in self.uri_options.items():
            if key in out and str(out[key]) != value:
                raise MlflowException(
                    f"-C {key}={out[key]} contradicts the target URI's {value!r}",
                    error_code=INVALID_PARAMETER_VALUE,
                )
            out[key] = value
        return out

    @property
    def host(self) -> Any:
        if self._host is None:
            from mlflow_steward.deployment.host import DeploymentHost
            from mlflow_steward.lifecycle.session import StewardSession

            self._host = _call(lambda: DeploymentHost(StewardSession(), progress=_progress))
        return self._host

    def _mine(self, name: str) -> Any:
        info = _call(lambda: self.host.get(name))
        if info.target != self.target_name:
            raise MlflowException(
                f"deployment {name!r} is on target {info.target!r}, not {self.target_name!r}",
                error_code=INVALID_PARAMETER_VALUE,
            )
        return info

    def create_deployment(self, name, model_uri, flavor=None, config=None, endpoint=None):
        _flavor(flavor)
        config = self._with_uri_options(config)
        info = _call(
            lambda: self.host.create(name, model_uri, target=self.target_name, config=config)
        )
        return _as_dict(info)

    def update_deployment(self, name, model_uri=None, flavor=None, config=None, endpoint=None):
        _flavor(flavor)
        self._mine(name)
        config = self._with_uri_options(config)
        traffic = config.pop("traffic", None)
        percent = None
        if traffic is not None:
            text = str(traffic).removeprefix("new=")
            if not text.isdigit():
                raise MlflowException(
                    f"traffic={traffic!r}: use -C traffic=new=PERCENT",
                    error_code=INVALID_PARAMETER_VALUE,
                )
            percent = int(text)
        info = _call(lambda: self.host.update(name, model_uri, config=config, traffic=percent))
        return _as_dict(info)

    def delete_deployment(self, name, config=None, endpoint=None):
        self._mine(name)
        _call(lambda: self.host.delete(name))

    def list_deployments(self, endpoint=None):
        return [_as_dict(i) for i in _call(lambda: self.host.list(self.target_name))]

    def get_deployment(self, name, endpoint=None):
        info = self._mine(name)
        return {**_as_dict(info), "status_detail": _call(lambda: self.host.status(name))["live"]}

    def predict(self, deployment_name=None, inputs=None, endpoint=None):
        self._mine(deployment_name)
        return _call(lambda: self.host.predict(deployment_name, inputs))


def _flavor(flavor: str | None) -> None:
    if flavor not in (None, "python_function"):
        raise MlflowException(
            f"steward targets serve the python_function flavor, not {flavor!r}",
            error_code=INVALID_PARAMETER_VALUE,
        )


def _as_dict(info: Any) -> dict[str, Any]:
    return {**info.to_dict(), "flavor": "python_function"}


def _call(work: Any) -> Any:
    """Steward's errors as MlflowExceptions with a 4xx code (MLflow's CLI prints the message)."""
    try:
        return work()
    except MlflowException:
        raise
    except StewardError as exc:
        raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from exc
    except PermissionError as exc:
        raise MlflowException(str(exc), error_code=PERMISSION_DENIED) from exc
    except Exception as exc:
        # A plugin target's own code raised: name the plugin (MLflow's CLI prints the message).
        from mlflow_steward.plugins.manager import get_plugin_manager

        who = get_plugin_manager().plugin_in_traceback(exc)
        if who is None:
            raise
        raise MlflowException(
            f"plugin {who} failed: {type(exc).__name__}: {exc}", error_code=INVALID_PARAMETER_VALUE
        ) from exc


def run_local(target, name, model_uri, flavor=None, config=None):
    raise MlflowException(
        "steward targets have no run-local mode: `mlflow deployments create -t steward-onprem "
        "...` already serves the model on this host, behind its gateway",
        error_code=INVALID_PARAMETER_VALUE,
    )


def target_help():
    """``mlflow deployments help -t steward-onprem`` / ``-t steward:/<target>``: MLflow passes no
    target to this function, so it describes every registered target, options generated from
    their declarations (the same text as ``steward deploy help -t <target>``)."""
    from mlflow_steward.deployment.host import target_help as one_target
    from mlflow_steward.plugins.manager import get_plugin_manager

    hooks = get_plugin_manager().hooks
    parts = [
        "mlflow-steward deployment targets. Use -t <target> for built-ins or "
        "-t steward:/<target> for any registered target; options go in -C key=value.",
        "",
    ]
    for name, registered in sorted(hooks.deployment_targets().items()):
        parts.append(f"== {name} ==")
        parts.append(one_target(registered, describe=hooks.describe_plugin(registered.plugin)))
        parts.append("")
    return "\n".join(parts)
