"""The policy engine: every applicable policy decides; one deny refuses; policies fail closed."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlflow_steward.config import (
    PolicyEntry,
    StewardConfig,
    When,
    check_options,
    did_you_mean,
)
from mlflow_steward.governance.policies import DECIDE_ON_THE_CALLING_THREAD
from mlflow_steward.governance.timeouts import PolicyTimeout, deciding_until, policy_pool
from mlflow_steward.plugins.events import ActionEvent, Decision, FactUnavailable, PolicyOutcome
from mlflow_steward.plugins.options import defaults
from mlflow_steward.plugins.types import PolicyVerdict

if TYPE_CHECKING:
    from mlflow_steward.plugins.manager import RegisteredPolicy, StewardPluginManager


def validate_options(
    config: StewardConfig, entry: PolicyEntry, registered: RegisteredPolicy, pm: Any = None
) -> dict[str, Any]:
    """Check an entry's ``with:`` against the policy's declared options; fill in defaults."""
    out = check_options(
        config,
        (*entry.where, "with"),
        entry.options,
        registered.policy.options,
        f"policy {entry.use!r}",
        plugin=pm.hooks.describe_plugin(registered.plugin) if pm is not None else None,
        none="(this policy takes no options)",
    )
    if registered.policy.validate is not None:
        try:
            registered.policy.validate(out)
        except ValueError as exc:
            raise config.error((*entry.where, "with"), f"policy {entry.use!r}: {exc}") from None
    return out


def resolve_policies(
    config: StewardConfig, pm: StewardPluginManager
) -> list[tuple[PolicyEntry, RegisteredPolicy, dict[str, Any]]]:
    """Match configured entries with registered policies; unknown names list the valid ones."""
    registered = pm.hooks.policies()
    resolved = []
    for entry in config.policies:
        if entry.use not in registered:
            valid = sorted(registered)
            hint = did_you_mean(entry.use, valid)
            blocked = [name for name, plugin in pm.list_name_plugin() if plugin is None]
            if blocked:
                hint += f" (disabled plugins, whose policies are unknown: {', '.join(blocked)})"
            raise config.error(
                (*entry.where, "use"),
                f"unknown policy {entry.use!r}{hint}; valid: {', '.join(valid)}",
            )
        reg = registered[entry.use]
        resolved.append((entry, reg, validate_options(config, entry, reg, pm)))
    return resolved


@dataclass(frozen=True)
class ConfiguredPolicy:
    label: str
    registered: RegisteredPolicy
    options: Mapping[str, Any]
    when: When
    timeout: float
    #: Runs on the deciding thread (a built-in that decides from facts only); else on the pool.
    on_calling_thread: bool = False

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
        # Configuration decides, else the policy's default; the event's is_prompt is fixed when
        # MLflow creates the model (protect-prompt-markers refuses later changes).
        scope = self.when.prompts or ("include" if policy.applies_to_prompts else "exclude")
        if scope == "include":
            return True
        return event.is_prompt if scope == "only" else not event.is_prompt


class PolicyEngine:
    """Applies the configured (and default-enabled) policies to events."""

    def __init__(self, pm: StewardPluginManager, config: StewardConfig) -> None:
        self._hooks = pm.hooks
        self.policies: list[ConfiguredPolicy] = []
        named: set[str] = set()
        for entry, reg, options in resolve_policies(config, pm):
            named.add(entry.use)
            timeout = entry.timeout if entry.timeout is not None else config.policy_timeout
            self.policies.append(self._configured(entry.label, reg, options, entry.when, timeout))
        for name, reg in sorted(pm.hooks.policies().items()):
            if reg.policy.enabled_by_default and name not in named:
                options = defaults(reg.policy.options)
                self.policies.append(
                    self._configured(name, reg, options, When(), config.policy_timeout)
                )

    def _configured(
        self,
        label: str,
        reg: RegisteredPolicy,
        options: Mapping[str, Any],
        when: When,
        timeout: float,
    ) -> ConfiguredPolicy:
        inline = reg.policy.name in DECIDE_ON_THE_CALLING_THREAD and self._hooks.is_builtin(
            reg.plugin
        )
        return ConfiguredPolicy(label, reg, options, when, timeout, inline)

    def applicable(self, event: ActionEvent) -> list[ConfiguredPolicy]:
        return [p for p in self.policies if p.applies_to(event)]

    def decide(self, event: ActionEvent) -> Decision:
        policies = self.applicable(event)
        outcomes: list[PolicyOutcome] = []
        while len(outcomes) < len(policies):
            if policies[len(outcomes)].on_calling_thread:
                outcomes.append(self._decide_here(policies[len(outcomes)], event))
                continue
            # The plugin policies up to the next built-in run one after another on one pool
            # thread (one hand-off, not one per policy); each is timed out on its own. After a
            # timeout the hung policy keeps that thread and the ones after it start again.
            end = len(outcomes)
            while end < len(policies) and not policies[end].on_calling_thread:
                end += 1
            batch = _Batch(policies[len(outcomes) : end], event)
            # In a copy of this context: policies see the action's context variables.
            policy_pool.submit(contextvars.copy_context().run, batch.run)
            outcomes += batch.collect(self._outcome)
        return Decision(event, tuple(outcomes))

    def _decide_here(self, configured: ConfiguredPolicy, event: ActionEvent) -> PolicyOutcome:
        """A built-in policy, on this thread: what it waits on beyond the registry's database
        gives up at its deadline (``timeouts.bounded``); finishing past it is a refusal too."""
        started = time.monotonic()
        result: Any = None
        exc: BaseException | None = None
        with deciding_until(started + configured.timeout, configured.timeout):
            try:
                result = configured.registered.policy.check(event, configured.options)
            except Exception as error:
                exc = error
        took = time.monotonic() - started
        if exc is None and took > configured.timeout:
            exc = PolicyTimeout(f"no verdict after {configured.timeout:g}s (it took {took:.1f}s)")
        return self._outcome(configured, event, result, exc)

    def _outcome(
        self,
        configured: ConfiguredPolicy,
        event: ActionEvent,
        result: Any,
        exc: BaseException | None,
    ) -> PolicyOutcome:
        reg = configured.registered

        def outcome(allowed: bool, reason: str, error: bool = False) -> PolicyOutcome:
            return PolicyOutcome(
                configured.label,
                reg.policy.name,
                reg.plugin,
                allowed,
                reason,
                error,
                options=configured.options,
            )

        if exc is None and isinstance(result, PolicyVerdict):
            return outcome(result.allowed, result.reason)
        plugin = self._hooks.describe_plugin(reg.plugin)
        if exc is None:
            exc = TypeError(f"returned {result!r} instead of a PolicyVerdict")
            reason = f"policy {exc} (plugin {plugin})"
        elif isinstance(exc, PolicyTimeout):
            reason = f"policy could not decide (plugin {plugin}): {exc}"
        elif isinstance(exc, FactUnavailable):
            reason = f"cannot decide: {exc}"
        else:
            reason = f"policy raised {type(exc).__name__}: {exc} (plugin {plugin})"
        self._hooks.on_policy_error(policy=configured.label, event=event, error=exc)
        return outcome(False, f"{reason}; refused because policies fail closed", error=True)


class _Batch:
    """Policies run in order on one pool thread, while the deciding thread times each one out."""

    def __init__(self, policies: list[ConfiguredPolicy], event: ActionEvent) -> None:
        self.policies = policies
        self.event = event
        self.results: list[tuple[Any, BaseException | None]] = []
        self.started = time.monotonic()  # of the policy running now (or of the submission)
        self.abandoned = False
        self.cond = threading.Condition()

    def run(self) -> None:
        for configured in self.policies:
            with self.cond:
                if self.abandoned:
                    return
                self.started = time.monotonic()
            try:
                result: tuple[Any, BaseException | None] = (
                    configured.registered.policy.check(self.event, configured.options),
                    None,
                )
            except BaseException as exc:  # fail closed on anything, SystemExit included
                result = (None, exc)
            with self.cond:
                if self.abandoned:
                    return
                self.results.append(result)
                self.started = time.monotonic()  # the next policy's clock starts now
                self.cond.notify_all()  # the deciding thread timed its wait for the one that ended

    def collect(self, outcome: Any) -> list[PolicyOutcome]:
        """Outcomes in order, until all are in or one times out (then it is the last one)."""
        done: list[PolicyOutcome] = []
        with self.cond:
            while len(done) < len(self.policies):
                configured = self.policies[len(done)]
                if len(self.results) > len(done):
                    result, exc = self.results[len(done)]
                    done.append(outcome(configured, self.event, result, exc))
                    continue
                remaining = self.started + configured.timeout - time.monotonic()
                if remaining <= 0:
                    self.abandoned = True
                    error = PolicyTimeout(f"no verdict after {configured.timeout:g}s")
                    done.append(outcome(configured, self.event, None, error))
                    break
                self.cond.wait(remaining)
        return done
