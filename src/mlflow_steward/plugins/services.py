"""What a plugin, a monitor rule's action or a command may use from a steward session.

:class:`StewardServices` is the session as the contract sees it (``ActionContext.session``,
``DeploymentHost``'s session); ``mlflow_steward.lifecycle.session.StewardSession`` satisfies it.
Every registry change made through it goes through the governed store: policies decide it and the
audit log records it, as for any other client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from mlflow_steward.plugins.events import ActionEvent

T = TypeVar("T")


class GovernedRegistry(Protocol):
    """The governed registry store: reads pass through to MLflow, writes are governed."""

    def get_model_version(self, name: str, version: str) -> Any: ...
    def get_model_version_by_alias(self, name: str, alias: str) -> Any: ...
    def holder_of(self, name: str, alias: str) -> str | None:
        """The version holding ``alias`` on ``name``, or ``None``."""
        ...

    def set_model_version_tag(self, name: str, version: str, tag: Any) -> None: ...
    def set_steward_tag(
        self, name: str, version: str, key: str, value: str, *, actor: str
    ) -> None: ...
    def delete_registered_model_alias(self, name: str, alias: str) -> None: ...


class MonitorConfig(Protocol):
    """A configured monitor (``monitors:`` in steward.yaml), as its rules' actions see it."""

    @property
    def name(self) -> str: ...
    @property
    def model(self) -> str:
        """The monitored model URI (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``)."""
        ...

    @property
    def rules(self) -> Sequence[Any]: ...


class StewardServices(Protocol):
    """A steward session on one governed registry."""

    registry_uri: str
    tracking_uri: str
    #: The loaded steward.yaml (``mlflow_steward.config.StewardConfig``).
    config: Any
    #: The plugin manager; call hooks through its ``hooks`` facade.
    pm: Any

    @property
    def store(self) -> GovernedRegistry:
        """The governed registry store (read-only here, so that a session's own store type
        satisfies it)."""
        ...

    @property
    def db_engine(self) -> Engine:
        """The engine on the registry database that holds steward's own tables."""
        ...

    def workspace(self) -> str:
        """The MLflow workspace the session acts in (``default`` without workspaces)."""
        ...

    def actor(self) -> str:
        """Who acts (the request's identity in the server, else ``MLFLOW_STEWARD_ACTOR``)."""
        ...

    def version_event(
        self, action: str, model: str, version: str, context: Mapping[str, Any]
    ) -> ActionEvent:
        """The event of governed ``action`` on registered ``model`` ``version`` (acting as
        :meth:`actor`), with the version's facts."""
        ...

    def governed(self, event: ActionEvent, write: Callable[[], T]) -> T:
        """Decide ``event`` under the model's write lock; on allow run ``write`` and audit it
        (a refusal raises, and is audited too)."""
        ...

    def has_retrainer(self) -> bool:
        """Whether a plugin implements ``steward_retrain``."""
        ...

    def version_of(self, ref: Any) -> str: ...
    def history(self, name: str, alias: str | None = None) -> list[Any]: ...
    def rollback(
        self,
        name: str,
        alias: str,
        *,
        to_version: str | None = None,
        load_check: bool = True,
        expect_current: str | None = None,
    ) -> tuple[str | None, str]: ...
