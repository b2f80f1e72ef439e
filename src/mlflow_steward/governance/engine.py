"""The policy engine: every applicable policy decides; one deny refuses; policies fail closed."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlflow_steward.config import (
    PolicyEntry,
    StewardConfig,
    When,
    default_value,
    resolve_policies,
)
from mlflow_steward.governance.events import ActionEvent, FactUnavailable
from mlflow_steward.plugins.types import PolicyVerdict

if TYPE_CHECKING:
    from mlflow_steward.plugins.manager import RegisteredPolicy, StewardPluginManager


#: Policies run on these threads, so that one that hangs can be timed out (fail closed). A worker
#: stays busy while its policy hangs; the pool grows to this many before a check has to queue
#: (and then times out, refused naming its policy).
POLICY_WORKERS = 64
_policy_pool = ThreadPoolExecutor(max_workers=POLICY_WORKERS, thread_name_prefix="steward-policy")


@dataclass(frozen=True)
class PolicyOutcome:
    """One policy's verdict on one event. ``policy`` is the configured label (default: its name)."""

    policy: str
    use: str
    plugin: str
    allowed: bool
    reason: str
    error: bool = False

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


@dataclass(frozen=True)
class ConfiguredPolicy:
    label: str
    registered: RegisteredPolicy
    options: Mapping[str, Any]
    when: When
    timeout: float

    def applies_to(self, event: ActionEvent) -> bool:
        policy = self.registered.policy
        if not self.when.matches(
            event.action,
            alias=event.alias,
            stage=event.stage,
            model=event.model,
            actor=event.actor,
            default_actions=policy.actions,
            target=event.context.get("target"),
        ):
            return False
        return policy.applies_to_prompts or not event.is_prompt


class PolicyEngine:
    """Applies the configured (and default-enabled) policies to events."""

    def __init__(self, pm: StewardPluginManager, config: StewardConfig) -> None:
        self._hooks = pm.hooks
        self.policies: list[ConfiguredPolicy] = []
        named: set[str] = set()
        for entry, reg, options in resolve_policies(config, pm):
            named.add(entry.use)
            self.policies.append(self._configured(entry, reg, options, config))
        for name, reg in sorted(pm.hooks.policies().items()):
            if reg.policy.enabled_by_default and name not in named:
                options = {o.name: default_value(o) for o in reg.policy.options if not o.required}
                self.policies.append(
                    ConfiguredPolicy(name, reg, options, When(), config.policy_timeout)
                )

    @staticmethod
    def _configured(
        entry: PolicyEntry, reg: RegisteredPolicy, options: Mapping[str, Any], config: StewardConfig
    ) -> ConfiguredPolicy:
        timeout = entry.timeout if entry.timeout is not None else config.policy_timeout
        return ConfiguredPolicy(entry.label, reg, options, entry.when, timeout)

    def applicable(self, event: ActionEvent) -> list[ConfiguredPolicy]:
        return [p for p in self.policies if p.applies_to(event)]

    def decide(self, event: ActionEvent) -> Decision:
        return Decision(event, tuple(self._run(p, event) for p in self.applicable(event)))

    def _run(self, configured: ConfiguredPolicy, event: ActionEvent) -> PolicyOutcome:
        reg = configured.registered
        plugin = self._hooks.describe_plugin(reg.plugin)

        def outcome(allowed: bool, reason: str, error: bool = False) -> PolicyOutcome:
            return PolicyOutcome(
                configured.label, reg.policy.name, reg.plugin, allowed, reason, error
            )

        future = _policy_pool.submit(reg.policy.check, event, configured.options)
        try:
            exc = future.exception(timeout=configured.timeout)
        except FutureTimeout:
            exc = TimeoutError(f"no verdict after {configured.timeout:g}s")
            reason = f"policy could not decide (plugin {plugin}): {exc}"
        else:
            if exc is None:
                result = future.result()
                if isinstance(result, PolicyVerdict):
                    return outcome(result.allowed, result.reason)
                exc = TypeError(f"returned {result!r} instead of a PolicyVerdict")
                reason = f"policy {exc} (plugin {plugin})"
            elif isinstance(exc, FactUnavailable):
                reason = f"cannot decide: {exc}"
            else:
                reason = f"policy raised {type(exc).__name__}: {exc} (plugin {plugin})"
        self._hooks.on_policy_error(policy=configured.label, event=event, error=exc)
        return outcome(False, f"{reason}; refused because policies fail closed", error=True)
