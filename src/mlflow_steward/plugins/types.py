"""Frozen registration types that plugins yield from the ``steward_*`` registration hooks.

Keep this module free of heavy imports: plugin packages import it at their own import time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import click

    from mlflow_steward.governance.events import ActionEvent

#: Every action that steward governs. ``when: {action: ...}`` in the configuration takes these.
ACTIONS: tuple[str, ...] = (
    "create_registered_model",
    "update_registered_model",
    "rename_registered_model",
    "delete_registered_model",
    "set_registered_model_tag",
    "delete_registered_model_tag",
    "create_model_version",
    "update_model_version",
    "delete_model_version",
    "set_model_version_tag",
    "delete_model_version_tag",
    "set_alias",
    "delete_alias",
    "transition_stage",
    "request_approval",
    "approve",
    "reject",
    "deploy",
)

#: Actions that move a version into a lifecycle position (an alias or a legacy stage).
PROMOTION_ACTIONS: frozenset[str] = frozenset({"set_alias", "transition_stage"})

#: Kinds of deployment target.
TARGET_KINDS: tuple[str, ...] = ("cloud", "onprem", "edge")

_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

OptionKind = Literal["str", "int", "number", "bool", "str_list", "mapping", "duration", "list"]


def validate_name(kind: str, name: str) -> None:
    """Registered names are lower-case words joined by dashes (``metric-threshold``)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"{kind} name {name!r} is not valid: use lower-case words joined by dashes, "
            "e.g. 'metric-threshold'"
        )


_REQUIRED = object()


@dataclass(frozen=True)
class Option:
    """One option a policy accepts under ``with:`` in the configuration."""

    name: str
    kind: OptionKind
    help: str
    default: Any = _REQUIRED
    choices: tuple[Any, ...] | None = None

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


@dataclass(frozen=True)
class PolicyVerdict:
    """What one policy says about one action. Build it with :meth:`allow` or :meth:`deny`."""

    allowed: bool
    reason: str

    @classmethod
    def allow(cls, reason: str = "ok") -> PolicyVerdict:
        return cls(True, reason)

    @classmethod
    def deny(cls, reason: str) -> PolicyVerdict:
        return cls(False, reason)


PolicyCheck = Callable[["ActionEvent", Mapping[str, Any]], PolicyVerdict]


@dataclass(frozen=True)
class Policy:
    """A policy a plugin offers, yielded from ``steward_policies()``.

    ``check(event, options)`` must return a :class:`PolicyVerdict`; anything else, an exception or
    running past the timeout is a deny attributed to the plugin (policies fail closed).

    ``actions`` are the actions the policy applies to when the configuration's ``when:`` names
    none. ``enabled_by_default`` policies apply without being listed in the configuration (with
    their option defaults); the others apply only where a ``use:`` entry names them.
    ``validate(options)`` may raise ``ValueError`` to reject a combination of options when the
    configuration is loaded (the error then names the file and line).
    """

    name: str
    check: PolicyCheck
    description: str
    actions: frozenset[str] = PROMOTION_ACTIONS
    options: tuple[Option, ...] = ()
    enabled_by_default: bool = False
    applies_to_prompts: bool = False
    validate: Callable[[Mapping[str, Any]], None] | None = None

    def __post_init__(self) -> None:
        validate_name("policy", self.name)
        unknown = set(self.actions) - set(ACTIONS)
        if unknown:
            raise ValueError(
                f"policy {self.name!r} names unknown actions {sorted(unknown)}; "
                f"valid actions: {', '.join(ACTIONS)}"
            )
        if not callable(self.check):
            raise TypeError(f"policy {self.name!r}: check must be callable")


@dataclass(frozen=True)
class Command:
    """A CLI command a plugin adds, yielded from ``steward_commands()``.

    ``load`` returns the :class:`click.Command`; it is called only when the command runs or help is
    shown, so a plugin can keep heavy imports inside it. Plugin commands may not shadow built-ins.
    """

    name: str
    load: Callable[[], click.Command]
    help: str = ""

    def __post_init__(self) -> None:
        validate_name("command", self.name)


@dataclass(frozen=True)
class DeploymentTarget:
    """A deployment target a plugin offers, yielded from ``steward_deployment_targets()``.

    ``client`` is a class (or factory) called as ``client(target, context)`` that returns an object
    with the methods of :class:`mlflow_steward.deployment.base.TargetClient` (create, update,
    delete, list, get, predict, rollback, promote_canary, health, status). It is called only when
    a command needs the target, so a plugin can keep heavy imports inside it.
    ``options`` is the target's configuration schema (``-C key=value``, ``deployments:`` in
    steward.yaml); unknown keys and bad values are refused before anything starts.
    """

    name: str
    kind: Literal["cloud", "onprem", "edge"]
    client: Callable[..., Any]
    help: str
    options: tuple[Option, ...] = ()

    def __post_init__(self) -> None:
        validate_name("deployment target", self.name)
        if self.kind not in TARGET_KINDS:
            raise ValueError(
                f"deployment target {self.name!r}: kind {self.kind!r} is not one of "
                f"{', '.join(TARGET_KINDS)}"
            )
        if not callable(self.client):
            raise TypeError(f"deployment target {self.name!r}: client must be callable")


@dataclass(frozen=True)
class PluginInfo:
    """What the manager knows about one registered plugin (for ``steward plugins``)."""

    name: str
    distribution: str | None
    version: str | None
    builtin: bool
    hooks: tuple[str, ...]
    provides: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def as_tuple(items: Iterable[Any] | None) -> tuple[Any, ...]:
    """Registration hooks may return a list, a tuple, a generator or ``None``."""
    return tuple(items) if items is not None else ()
