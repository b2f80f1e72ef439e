"""The policy engine at its edges: configuration errors with their keys and lines, which
policies apply (default actions, prompts), where each runs (the deciding thread or the pool),
outcomes in configuration order, and the reason of every way a policy can fail (fail closed)."""

from __future__ import annotations

import time

import pytest

from mlflow_steward import hookimpl
from mlflow_steward.config import When, parse_config
from mlflow_steward.errors import ConfigError
from mlflow_steward.governance.engine import PolicyEngine
from mlflow_steward.plugins.events import FactUnavailable
from mlflow_steward.plugins.manager import create_plugin_manager
from mlflow_steward.plugins.testing import StaticFacts, make_event
from mlflow_steward.plugins.types import Option, Policy, PolicyVerdict


class Plugin:
    """An in-process plugin with policies whose checks the tests set."""

    def __init__(self, **checks) -> None:
        self.checks = checks
        self.errors: list[tuple[str, str, BaseException]] = []

    @hookimpl
    def steward_policies(self):
        for name, check in self.checks.items():
            yield Policy(
                name=name,
                check=check,
                description=name,
                options=(Option("n", "int", "a number", 1),),
                validate=_positive,
            )

    @hookimpl
    def steward_on_policy_error(self, policy, event, error):
        self.errors.append((policy, event.action, error))


def _positive(options) -> None:
    if options["n"] <= 0:
        raise ValueError("n must be positive")


def _engine(config: str, plugin: Plugin | None = None, **kw) -> PolicyEngine:
    pm = create_plugin_manager(autoload=False, plugins=[plugin] if plugin else (), **kw)
    return PolicyEngine(pm, parse_config(config, path="steward.yaml"))


def only(decision, label: str):
    (found,) = [o for o in decision.outcomes if o.policy == label]
    return found


def allow(reason="fine"):
    return lambda event, options: PolicyVerdict.allow(f"{reason} n={options['n']}")


# -- configuration --------------------------------------------------------------------------------


def test_a_policys_own_validation_error_names_key_and_line():
    cfg = "policies:\n  - use: team\n    with: {n: 0}\n"
    with pytest.raises(ConfigError) as caught:
        _engine(cfg, Plugin(team=allow()))
    assert (
        str(caught.value) == "steward.yaml:3: policies[0].with: policy 'team': n must be positive"
    )
    with pytest.raises(
        ConfigError, match=r"steward.yaml:3: policies\[0\].with.n: expected a whole number"
    ):
        _engine("policies:\n  - use: team\n    with: {n: x}\n", Plugin(team=allow()))
    with pytest.raises(ConfigError) as caught:
        _engine("policies:\n  - use: require-identity\n    with: {n: 1}\n")
    assert "steward.yaml:3: policies[0].with" in str(caught.value)
    assert "'n'" in str(caught.value)


def test_options_are_filled_with_their_defaults():
    eng = _engine("policies: [team, {use: team, id: t2, with: {n: 5}}]", Plugin(team=allow()))
    assert [(p.label, dict(p.options)) for p in eng.policies[:2]] == [
        ("team", {"n": 1}),
        ("t2", {"n": 5}),
    ]
    decision = eng.decide(make_event())
    reasons = {o.policy: o.reason for o in decision.outcomes}
    assert (reasons["team"], reasons["t2"]) == ("fine n=1", "fine n=5")


def test_an_unknown_policy_lists_the_valid_ones_and_the_disabled_plugins():
    with pytest.raises(ConfigError) as caught:
        _engine("policies:\n  - use: require-signatur\n")
    message = str(caught.value)
    assert message.startswith(
        "steward.yaml:2: policies[0].use: unknown policy 'require-signatur' (did you mean "
        "'require-signature'?); valid: "
    )
    assert "allowed-requirements, approvals, content-digest," in message
    assert "disabled plugins" not in message
    with pytest.raises(ConfigError) as caught:
        _engine("policies: [freeze-window]", disable=["builtin.freeze_window", "someone-else"])
    assert (
        "unknown policy 'freeze-window' (disabled plugins, whose policies are unknown: "
        "builtin.freeze_window, someone-else); valid: " in str(caught.value)
    )


def test_timeouts_come_from_the_entry_else_the_configuration():
    eng = _engine(
        "policy_timeout: 7s\npolicies: [team, {use: team, id: quick, timeout: 2s}]",
        Plugin(team=allow()),
    )
    timeouts = {p.label: p.timeout for p in eng.policies}
    assert (timeouts["team"], timeouts["quick"]) == (7.0, 2.0)
    assert timeouts["content-digest"] == 7.0  # on by default, with the configuration's timeout
    assert _engine("").policies[0].timeout == 10.0  # the default policy timeout


def test_a_default_policy_named_in_the_configuration_is_there_once_with_its_settings():
    eng = _engine("policies: [{use: protect-aliases, with: {aliases: [prod]}, when: {model: x}}]")
    labels = [p.label for p in eng.policies]
    assert labels == ["protect-aliases", "content-digest", "protect-prompt-markers"]
    assert dict(eng.policies[0].options) == {"aliases": ["prod"]}
    assert eng.policies[1].options == {}
    assert eng.policies[1].when == When()


def test_built_ins_that_decide_from_facts_run_on_the_deciding_thread():
    eng = _engine(
        "policies: [require-signature, approvals, team, freeze-window-x]".replace(
            "freeze-window-x", "{use: freeze-window, with: {windows: [{from: '01:00'}]}}"
        ),
        Plugin(team=allow()),
    )
    inline = {p.label: p.on_calling_thread for p in eng.policies}
    assert inline == {
        "require-signature": True,
        "approvals": False,  # reads steward's tables: the pool, where it can be timed out
        "team": False,
        "freeze-window": True,
        "content-digest": True,
        "protect-aliases": True,
        "protect-prompt-markers": True,
    }


# -- applicability --------------------------------------------------------------------------------


def test_when_narrows_and_default_actions_apply():
    eng = _engine(
        "policies: [{use: team, when: {action: deploy, model: [fraud, 'risk-*']}}]",
        Plugin(team=allow()),
    )
    team = eng.policies[0]
    assert team.applies_to(make_event("deploy", "fraud"))
    assert team.applies_to(make_event("deploy", "risk-eu"))
    assert not team.applies_to(make_event("deploy", "other"))
    assert not team.applies_to(make_event("set_alias", "fraud"))
    protect = next(p for p in eng.policies if p.label == "protect-aliases")
    assert protect.applies_to(make_event("delete_model_version"))
    assert not protect.applies_to(make_event("set_alias"))


@pytest.mark.parametrize(
    ("prompts", "on_model", "on_prompt"),
    [(None, True, False), ("include", True, True), ("exclude", True, False), ("only", False, True)],
)
def test_prompt_scope(prompts, on_model, on_prompt):
    when = f", when: {{prompts: {prompts}}}" if prompts else ""
    eng = _engine(f"policies: [{{use: team{when}}}]", Plugin(team=allow()))
    team = eng.policies[0]
    model = make_event("set_alias", context={"is_prompt": False})
    prompt = make_event("set_alias", context={"is_prompt": True})
    assert (team.applies_to(model), team.applies_to(prompt)) == (on_model, on_prompt)
    # a policy that applies to prompts by default (protect-prompt-markers), unless configured
    markers = next(p for p in eng.policies if p.label == "protect-prompt-markers")
    tag = make_event("set_model_version_tag", tag_key="x", context={"is_prompt": True})
    assert markers.applies_to(tag)
    only_models = _engine("policies: [{use: protect-prompt-markers, when: {prompts: exclude}}]")
    assert not only_models.policies[0].applies_to(tag)


# -- deciding ---------------------------------------------------------------------------------------


def test_outcomes_keep_configuration_order_across_threads():
    order = []

    def note(name):
        def check(event, options):
            order.append(name)
            return PolicyVerdict.allow(name)

        return check

    plugin = Plugin(p1=note("p1"), p2=note("p2"), p3=note("p3"))
    eng = _engine(
        "policies: [p1, require-signature, p2, p3, required-tags-x]".replace(
            "required-tags-x", "{use: required-tags, with: {tags: [owner]}}"
        ),
        plugin,
    )
    decision = eng.decide(make_event("set_alias", facts=StaticFacts(version_tags={"owner": "a"})))
    assert [o.policy for o in decision.outcomes] == [
        "p1",
        "require-signature",
        "p2",
        "p3",
        "required-tags",
        "content-digest",
    ]
    assert order == ["p1", "p2", "p3"]
    assert decision.allowed
    assert [o.use for o in decision.outcomes][:2] == ["p1", "require-signature"]
    assert decision.outcomes[0].plugin == decision.outcomes[2].plugin
    assert decision.outcomes[1].plugin == "builtin.require_signature"
    assert not any(o.error for o in decision.outcomes)


def test_a_policy_that_returns_something_else_is_refused_naming_it():
    plugin = Plugin(team=lambda event, options: True)
    decision = _engine("policies: [team]", plugin).decide(
        make_event("set_alias", alias="production")
    )
    outcome = only(decision, "team")
    assert not outcome.allowed
    assert outcome.error
    assert outcome.reason.startswith("policy returned True instead of a PolicyVerdict (plugin '")
    assert outcome.reason.endswith("); refused because policies fail closed")
    assert [(p, a, type(e).__name__) for p, a, e in plugin.errors] == [
        ("team", "set_alias", "TypeError")
    ]


def test_a_policy_that_raises_is_refused_naming_the_error_and_plugin():
    def boom(event, options):
        raise KeyError("owner")

    plugin = Plugin(team=boom)
    outcome = only(
        _engine("policies: [team]", plugin).decide(make_event("set_alias", alias="production")),
        "team",
    )
    assert (outcome.allowed, outcome.error) == (False, True)
    assert outcome.reason.startswith("policy raised KeyError: 'owner' (plugin '")
    assert outcome.reason.endswith("; refused because policies fail closed")
    assert plugin.errors[0][0] == "team"
    assert isinstance(plugin.errors[0][2], KeyError)


def test_a_fact_that_cannot_be_read_is_refused_saying_so():
    def unavailable(event, options):
        raise FactUnavailable("no run metrics")

    plugin = Plugin(team=unavailable)
    outcome = only(
        _engine("policies: [team]", plugin).decide(make_event("set_alias", alias="production")),
        "team",
    )
    assert outcome.reason == "cannot decide: no run metrics; refused because policies fail closed"
    assert outcome.error
    # a built-in on the deciding thread: the same reasons
    builtin = _engine("policies: [{use: required-tags, with: {tags: [a]}}]")
    facts = StaticFacts(version_tags=None)  # type: ignore[arg-type]
    outcomes = {o.policy: o for o in builtin.decide(make_event(alias="p", facts=facts)).outcomes}
    assert outcomes["required-tags"].error
    assert outcomes["required-tags"].reason.startswith("policy raised AttributeError")
    assert outcomes["required-tags"].reason.endswith(
        "(plugin 'builtin.required_tags' (built-in)); refused because policies fail closed"
    )


def test_a_slow_policy_times_out_with_its_timeout_in_the_reason():
    def slow(event, options):
        time.sleep(0.4)
        return PolicyVerdict.allow()

    plugin = Plugin(team=slow, fast=allow())
    eng = _engine("policies: [{use: team, timeout: 0.1}, fast]", plugin)
    outcomes = [
        o
        for o in eng.decide(make_event("set_alias", alias="production")).outcomes
        if o.policy != "content-digest"
    ]
    assert outcomes[0].reason.startswith("policy could not decide (plugin '")
    assert outcomes[0].reason.endswith(
        "): no verdict after 0.1s; refused because policies fail closed"
    )
    assert outcomes[0].error
    assert (outcomes[1].policy, outcomes[1].allowed) == ("fast", True)
    assert type(plugin.errors[0][2]).__name__ == "PolicyTimeout"


def test_a_built_in_that_finishes_past_its_timeout_is_refused(monkeypatch):
    from mlflow_steward.governance.policies import require_identity

    real = require_identity.check

    def slow(event, options):
        time.sleep(0.15)
        return real(event, options)

    monkeypatch.setattr(require_identity, "check", slow)
    eng = _engine("policies: [{use: require-identity, timeout: 0.05}]")
    # the engine holds the policy's check as registered: rebuild after the patch
    (outcome,) = [
        o
        for o in eng.decide(make_event("delete_alias", actor="a")).outcomes
        if o.policy == "require-identity"
    ]
    assert not outcome.allowed
    assert outcome.reason.startswith(
        "policy could not decide (plugin 'builtin.require_identity' (built-in)): no verdict after 0.05s (it took 0."
    )
    assert outcome.reason.endswith("s); refused because policies fail closed")


def test_one_deny_refuses_and_allows_are_kept():
    plugin = Plugin(agree=allow("agree"), refuse=lambda e, o: PolicyVerdict.deny("no way"))
    decision = _engine("policies: [agree, refuse]", plugin).decide(
        make_event("set_alias", alias="production")
    )
    assert not decision.allowed
    assert [(o.policy, o.allowed, o.reason, o.error) for o in decision.outcomes][:2] == [
        ("agree", True, "agree n=1", False),
        ("refuse", False, "no way", False),
    ]
    assert plugin.errors == []
    assert (
        _engine("policies: [agree]", plugin)
        .decide(make_event("set_alias", alias="production"))
        .allowed
    )
    assert _engine("", plugin).decide(make_event("delete_alias")).outcomes == ()
