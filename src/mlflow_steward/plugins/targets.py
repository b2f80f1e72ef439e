"""What every deployment target shares (part of the plugin contract): the event plugins observe,
the state a deployment is in, and the interface a target's client implements."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from mlflow_steward.plugins.events import DEFAULT_WORKSPACE

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import Connection

    from mlflow_steward.plugins.types import DeploymentTarget

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ResolvedModel:
    """The concrete registered version a deploy serves (``models:/NAME@ALIAS`` resolved)."""

    name: str
    version: str
    requested: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class DeploymentEvent:
    """One deployment step, after governance allowed it (hooks ``steward_*_deploy``)."""

    operation: str
    name: str
    target: str
    kind: str
    actor: str
    model: ResolvedModel | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    traffic: int | None = None


@dataclass
class DeploymentInfo:
    """A deployment's recorded state, shared by every host through the registry database."""

    name: str
    target: str
    kind: str
    model: str
    version: str
    status: str
    endpoint: str | None = None
    requested: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    traffic: dict[str, int] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    created: str | None = None
    updated: str | None = None
    #: The MLflow workspace of the registry the deployment serves from (``default`` without
    #: workspaces). Deployment names are unique across workspaces.
    workspace: str = DEFAULT_WORKSPACE

    def to_dict(self, *, runtime: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not runtime:
            out.pop("runtime")
        return out


class DeploymentRecords(Protocol):
    """The deployments recorded in the registry database, as a target client sees them
    (``mlflow_steward.records.deployments.DeploymentStore``)."""

    def get(self, name: str) -> DeploymentInfo | None: ...
    def require(self, name: str) -> DeploymentInfo: ...
    def list(self, target: str | None = None) -> list[DeploymentInfo]: ...
    def update_row(self, conn: Connection | None, name: str, **values: Any) -> None: ...
    def set_runtime(self, name: str, runtime: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class DeploymentContext:
    """What the host gives a target client: the shared state, where the registry is, and a
    callback to show progress on long steps."""

    store: DeploymentRecords
    registry_uri: str
    tracking_uri: str
    actor: str
    progress: Progress = lambda message: None
    #: ``False``: prepare and record the deployment but start nothing (``--emit systemd``: a
    #: service manager starts it).
    launch: bool = True


class TargetClient(abc.ABC):
    """The interface of a deployment target's client.

    The host has already resolved the model, checked the options against the target's schema,
    asked governance and recorded the decision; the client does the physical work and returns the
    deployment's new state. Errors propagate (as :class:`~mlflow_steward.errors.DeploymentError`
    with a message a user can act on); the host records them on the deployment's history.
    """

    def __init__(self, target: DeploymentTarget, context: DeploymentContext) -> None:
        self.target = target
        self.context = context

    def validate(self, name: str, options: Mapping[str, Any]) -> None:  # noqa: B027
        """Refuse a deployment that cannot work (a port in use, ...) before anything starts."""

    @contextlib.contextmanager
    def prepare(
        self, operation: str, info: DeploymentInfo, model: ResolvedModel
    ) -> Iterator[Mapping[str, Any]]:
        """Make what a step deploys before governance decides it, and yield facts measured
        from it: the host adds them to the ``deploy`` event's context, so that policies decide
        on what will be deployed (the edge target builds its bundle here and yields its size and
        ONNX facts). The step (``create``, ``update``, ``rollback``, ``promote_canary``) runs
        inside the context, which then ends, refused or not. By default nothing is made."""
        yield {}

    @abc.abstractmethod
    def create(
        self, info: DeploymentInfo, model: ResolvedModel, traffic: int | None
    ) -> DeploymentInfo: ...

    @abc.abstractmethod
    def update(
        self, info: DeploymentInfo, model: ResolvedModel, traffic: int | None
    ) -> DeploymentInfo: ...

    @abc.abstractmethod
    def delete(self, info: DeploymentInfo) -> None: ...

    def get(self, info: DeploymentInfo) -> DeploymentInfo:
        """The deployment as the target sees it; by default what the registry database records
        (a target that can ask its platform may refresh status and endpoint here)."""
        return info

    def list(self, infos: list[DeploymentInfo]) -> list[DeploymentInfo]:
        """The target's deployments, given the recorded ones; by default those."""
        return [self.get(info) for info in infos]

    @abc.abstractmethod
    def predict(self, info: DeploymentInfo, inputs: Any) -> pd.DataFrame: ...

    @abc.abstractmethod
    def rollback(self, info: DeploymentInfo, model: ResolvedModel | None) -> DeploymentInfo:
        """Undo a canary (``model`` is ``None``) or go back to ``model``, the version served
        before."""

    def promote_canary(self, info: DeploymentInfo) -> DeploymentInfo:
        raise NotImplementedError(f"target {self.target.name} has no canary rollouts")

    @abc.abstractmethod
    def health(self, info: DeploymentInfo) -> dict[str, Any]:
        """``{"healthy": bool, ...}``; never raises for an unreachable deployment."""

    def status(self, info: DeploymentInfo) -> dict[str, Any]:
        """Live status: version, health, traffic split, request counts, error rate."""
        return {"health": self.health(info)}

    def start(self, info: DeploymentInfo) -> DeploymentInfo:
        """Bring a recorded deployment back (after a restart of its host)."""
        raise NotImplementedError(f"target {self.target.name} cannot be restarted by steward")
