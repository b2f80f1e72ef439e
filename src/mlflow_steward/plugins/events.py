"""The event every governed action becomes, the model facts policies read from it, and the
decision the policies reach on it (part of the plugin contract: plugins import these from
``mlflow_steward.plugins``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable


class FactUnavailable(Exception):
    """A fact a policy asked for cannot be determined (the policy then denies: fail closed)."""


#: ``ActionEvent.context`` key with {alias: version} held by the model or version an action
#: deletes or renames (set by the governed store; read by ``protect-aliases``).
ALIASES_HELD = "aliases_held"

#: What a review entry says about a version taking an alias.
REVIEW_VERDICTS = ("request", "approve", "reject")

#: The governed actions a review can be about: a promotion's approval does not approve the
#: demotion (``delete_alias``), nor a deployment.
REVIEWED_ACTIONS = ("set_alias", "delete_alias", "transition_stage", "deploy")

#: The reserved version tag holding the version's content digest, recorded at registration.
DIGEST_TAG = "steward.content_digest"

#: The workspace of actions on a server without ``--enable-workspaces`` (MLflow's
#: ``DEFAULT_WORKSPACE_NAME``; also what rows of steward's tables from before workspaces hold).
DEFAULT_WORKSPACE = "default"


@dataclass(frozen=True)
class Approval:
    """One review entry of a version for an alias: a request for the move, an approval or a
    rejection (``verdict``). ``approver`` is who made it; ``created`` is epoch seconds."""

    model: str
    version: str
    alias: str
    approver: str
    comment: str
    created: float
    verdict: str = "approve"
    #: The action reviewed (``set_alias``: the promotion; ``delete_alias``: the demotion; ...).
    action: str = "set_alias"
    #: The registered model's identity when reviewed (its creation time in MLflow, epoch ms).
    model_created: int | None = None
    #: The version's content digest when reviewed (``None``: recorded before 0.2).
    digest: str | None = None
    workspace: str = DEFAULT_WORKSPACE

    def to_dict(self) -> dict[str, Any]:
        """The form the CLI and the server's REST API show."""
        return {
            "name": self.model,
            "version": self.version,
            "alias": self.alias,
            "verdict": self.verdict,
            "actor": self.approver,
            "comment": self.comment,
            "created": self.created,
            "action": self.action,
            "model_created": self.model_created,
            "digest": self.digest,
            "workspace": self.workspace,
        }


@runtime_checkable
class ModelFacts(Protocol):
    """What is known about the model version an action concerns. Resolved lazily, once per event.

    Each attribute may raise :class:`FactUnavailable` when it cannot be determined.
    """

    @property
    def signature(self) -> Mapping[str, Any] | None: ...
    @property
    def has_input_example(self) -> bool: ...
    @property
    def requirements(self) -> list[str]: ...
    @property
    def environment_requirements(self) -> Mapping[str, tuple[str, ...]]:
        """Requirement lines per environment file present (``requirements.txt``,
        ``python_env.yaml``, ``conda.yaml``); conda specs written as pip lines."""
        ...

    @property
    def run_metrics(self) -> Mapping[str, float]: ...
    @property
    def run_params(self) -> Mapping[str, str]: ...
    @property
    def run_tags(self) -> Mapping[str, str]: ...
    @property
    def author(self) -> str | None: ...
    @property
    def registrant(self) -> str | None:
        """Who registered the version, as steward recorded it (authenticated on the server)."""
        ...

    @property
    def evaluation_metrics(self) -> Mapping[str, float]: ...
    @property
    def version_tags(self) -> Mapping[str, str]: ...
    @property
    def model_tags(self) -> Mapping[str, str]: ...
    @property
    def is_prompt(self) -> bool: ...
    @property
    def version(self) -> str | None: ...
    @property
    def model_created(self) -> int | None:
        """The registered model's identity: its creation time in MLflow (epoch ms)."""
        ...

    @property
    def content_digest(self) -> str:
        """The digest of the version's artifacts as they are now (``sha256:<hex>``)."""
        ...

    @property
    def recorded_digest(self) -> str | None:
        """The digest recorded when the version was registered (``None``: registered without
        steward, or before 0.2)."""
        ...

    def changed_files(self) -> list[str]:
        """The artifacts that differ from what was recorded at registration."""
        ...

    def approvals(self, alias: str, action: str = "set_alias") -> list[Approval]:
        """Review entries (requests, approvals, rejections) of ``action`` for this version and
        ``alias``, in the action's workspace, whatever model or content they were about (the
        ``approvals`` policy counts only those bound to this model and its content)."""
        ...

    def alias_holder(self, alias: str) -> ModelFacts | None:
        """Facts of the version currently holding ``alias`` on this model, if any."""
        ...


@dataclass(frozen=True)
class ActionEvent:
    """One governed action: what is asked, on what, by whom, when."""

    action: str
    model: str
    actor: str
    time: datetime
    version: str | None = None
    alias: str | None = None
    stage: str | None = None
    tag_key: str | None = None
    tag_value: str | None = None
    new_name: str | None = None
    facts: ModelFacts | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    #: The MLflow workspace of the action (``default`` without ``--enable-workspaces``).
    workspace: str = DEFAULT_WORKSPACE

    @property
    def is_prompt(self) -> bool:
        if "is_prompt" in self.context:
            return bool(self.context["is_prompt"])
        if self.facts is None:
            return False
        try:
            return self.facts.is_prompt
        except FactUnavailable:
            return False

    @property
    def target(self) -> str:
        uri = f"models:/{self.model}"
        if self.version:
            uri += f"/{self.version}"
        if self.alias:
            uri += f"@{self.alias}"
        return uri

    def details(self) -> dict[str, Any]:
        """The action's arguments beyond model/version/alias, for the audit log."""
        out: dict[str, Any] = {}
        for key in ("stage", "tag_key", "tag_value", "new_name"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out.update({k: v for k, v in self.context.items() if k != "is_prompt"})
        return out


@dataclass(frozen=True)
class PolicyOutcome:
    """One policy's verdict on one event. ``policy`` is the configured label (default: its name)."""

    policy: str
    use: str
    plugin: str
    allowed: bool
    reason: str
    error: bool = False
    #: The policy's configured options (``with:``, defaults filled in) it decided with: the
    #: thresholds, counts, ... that evidence records. Not part of :meth:`to_dict` (the audit
    #: entry), nor of equality.
    options: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "use": self.use,
            "plugin": self.plugin,
            "allowed": self.allowed,
            "reason": self.reason,
            "error": self.error,
        }


@dataclass(frozen=True)
class Decision:
    """The verdict of every applicable policy on one event."""

    event: ActionEvent
    outcomes: tuple[PolicyOutcome, ...]

    @property
    def allowed(self) -> bool:
        return all(o.allowed for o in self.outcomes)

    @property
    def denials(self) -> tuple[PolicyOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.allowed)

    def message(self) -> str:
        head = f"{self.event.action} on {self.event.target} by {self.event.actor}"
        if self.allowed:
            return f"allowed: {head}"
        reasons = "; ".join(f"[{o.policy}] {o.reason}" for o in self.denials)
        return f"refused by steward: {head}: {reasons}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "action": self.event.action,
            "target": self.event.target,
            "actor": self.event.actor,
            "policies": [o.to_dict() for o in self.outcomes],
        }
