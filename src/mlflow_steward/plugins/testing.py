"""Test kit for plugin authors: a pytest plugin you load in your own ``conftest.py``::

    pytest_plugins = ["mlflow_steward.plugins.testing"]

(opt-in: installing steward does not load it into every pytest session).

Fixtures:

* ``steward_plugin_manager`` — a factory: ``steward_plugin_manager(plugins=[MyPlugin()])`` builds a
  fresh manager with the built-ins, your in-process plugins, and no third-party autoload.
* ``steward_event`` — a factory for :class:`~mlflow_steward.plugins.events.ActionEvent` backed by
  :class:`StaticFacts`, to unit-test a policy's ``check`` without MLflow.

Importing this module is cheap (no MLflow).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import pytest

from mlflow_steward.plugins.events import ActionEvent, Approval, FactUnavailable

if TYPE_CHECKING:
    from mlflow_steward.plugins.events import ModelFacts


@dataclass
class StaticFacts:
    """In-memory :class:`~mlflow_steward.plugins.events.ModelFacts` for unit tests.

    A field set to ``None`` where a value is required raises :class:`FactUnavailable` when read,
    like a fact MLflow cannot provide.
    """

    signature: Mapping[str, Any] | None = field(default_factory=lambda: {"inputs": "[]"})
    has_input_example: bool = False
    requirements: list[str] | None = field(default_factory=list)
    #: ``None``: the ``requirements`` above as the model's only environment file.
    environment_requirements: Mapping[str, tuple[str, ...]] | None = None
    run_metrics: Mapping[str, float] = field(default_factory=dict)
    run_params: Mapping[str, str] = field(default_factory=dict)
    run_tags: Mapping[str, str] = field(default_factory=dict)
    author: str | None = None
    registrant: str | None = None
    evaluation_metrics: Mapping[str, float] = field(default_factory=dict)
    version_tags: Mapping[str, str] = field(default_factory=dict)
    model_tags: Mapping[str, str] = field(default_factory=dict)
    is_prompt: bool = False
    version: str | None = "1"
    holders: Mapping[str, StaticFacts] = field(default_factory=dict)
    approval_list: list[Approval] = field(default_factory=list)
    #: The registered model's identity (its creation time); reviews bind to it.
    model_created: int | None = 1
    #: The digest of the artifacts now (``None``: they cannot be read) and the one recorded at
    #: registration (``None``: none was recorded).
    content_digest: str | None = "sha256:static"
    recorded_digest: str | None = None
    #: What :meth:`changed_files` reports when the two digests differ.
    changed: list[str] = field(default_factory=lambda: ["model.pkl (changed)"])

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if name == "requirements" and value is None:
            raise FactUnavailable("no requirements.txt")
        if name == "content_digest" and value is None:
            raise FactUnavailable("the artifacts cannot be read")
        if name == "environment_requirements" and value is None:
            return {"requirements.txt": tuple(self.requirements or ())}  # None raised above
        return value

    def changed_files(self) -> list[str]:
        if self.recorded_digest is None or self.recorded_digest == self.content_digest:
            return []
        return list(self.changed)

    def approvals(self, alias: str, action: str = "set_alias") -> list[Approval]:
        return [a for a in self.approval_list if a.alias == alias and a.action == action]

    def alias_holder(self, alias: str) -> StaticFacts | None:
        return self.holders.get(alias)


def make_event(
    action: str = "set_alias",
    model: str = "model",
    *,
    actor: str = "tester",
    time: datetime | None = None,
    facts: Any = None,
    **fields: Any,
) -> ActionEvent:
    """An event for unit tests; ``facts`` defaults to a fresh :class:`StaticFacts`."""
    return ActionEvent(
        action=action,
        model=model,
        actor=actor,
        time=time or datetime.now(UTC),
        # StaticFacts reads as ModelFacts: its fields left None raise FactUnavailable when read
        # (__getattribute__), so a reader never sees the None its field types allow.
        facts=facts if facts is not None else cast("ModelFacts", StaticFacts()),
        **fields,
    )


@pytest.fixture
def steward_plugin_manager() -> Callable[..., Any]:
    from mlflow_steward.plugins.manager import create_plugin_manager

    def build(**kwargs: Any) -> Any:
        kwargs.setdefault("autoload", False)
        return create_plugin_manager(**kwargs)

    return build


@pytest.fixture
def steward_event() -> Callable[..., ActionEvent]:
    return make_event
