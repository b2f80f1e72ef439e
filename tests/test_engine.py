"""The policy engine and the plugin manager, with in-memory facts (pure logic)."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from mlflow_steward import hookimpl
from mlflow_steward.config import parse_config
from mlflow_steward.errors import PluginConflictError, PluginLoadError
from mlflow_steward.governance.engine import PolicyEngine
from mlflow_steward.plugins.manager import create_plugin_manager
from mlflow_steward.plugins.testing import StaticFacts, make_event
from mlflow_steward.plugins.types import Policy, PolicyVerdict


def _policy_plugin(name, check, **kw):
    class Plugin:
        @hookimpl
        def steward_policies(self):
            yield Policy(name=name, check=check, description="test", **kw)

    Plugin.__name__ = f"plugin_{name.replace('-', '_')}"
    return Plugin()


#: Built-in guards on by default that these tests of the engine's own logic leave out (they
#: would add an outcome to every promotion and tag write); test_policies.py tests them.
GUARDS = ("builtin.content_digest", "builtin.prompt_markers")


def _engine(config_text: str, *plugins, guards: bool = False):
    pm = create_plugin_manager(plugins=plugins, autoload=False, disable=() if guards else GUARDS)
    return PolicyEngine(pm, parse_config(config_text, path="steward.yaml"))


def _raise(event, options):
    raise RuntimeError("database exploded")


def test_one_deny_refuses_and_every_reason_names_its_policy():
    engine = _engine("""
policies:
  - use: require-signature
  - use: required-tags
    with: {tags: [owner]}
""")
    decision = engine.decide(make_event(alias="production", facts=StaticFacts(signature=None)))
    assert not decision.allowed
    assert [(o.policy, o.allowed) for o in decision.outcomes] == [
        ("require-signature", False),
        ("required-tags", False),
    ]
    assert "[require-signature] the model has no signature" in decision.message()
    assert "[required-tags] missing tag owner on the version" in decision.message()
    ok = engine.decide(
        make_event(alias="production", facts=StaticFacts(version_tags={"owner": "alice"}))
    )
    assert ok.allowed
    assert len(ok.outcomes) == 2


def test_raising_policy_is_a_deny_naming_the_plugin():
    engine = _engine("policies: [{use: boom}]\n", _policy_plugin("boom", _raise))
    decision = engine.decide(make_event())
    assert not decision.allowed
    (outcome,) = decision.outcomes
    assert outcome.error
    assert outcome.policy == "boom"
    assert "RuntimeError: database exploded" in outcome.reason
    assert "plugin_boom" in outcome.reason
    assert "fail closed" in outcome.reason


@pytest.mark.parametrize("returned", [True, None, "allow", {"allowed": True}])
def test_wrong_return_type_is_a_deny(returned):
    engine = _engine("policies: [{use: sloppy}]\n", _policy_plugin("sloppy", lambda e, o: returned))
    decision = engine.decide(make_event())
    assert not decision.allowed
    assert "instead of a PolicyVerdict" in decision.outcomes[0].reason


def test_timeout_is_a_deny():
    def slow(event, options):
        time.sleep(5)
        return PolicyVerdict.allow()

    engine = _engine("policies: [{use: slow, timeout: 0.2}]\n", _policy_plugin("slow", slow))
    started = time.perf_counter()
    decision = engine.decide(make_event())
    assert time.perf_counter() - started < 2
    assert not decision.allowed
    assert "no verdict after 0.2s" in decision.outcomes[0].reason


def test_a_hung_policy_times_out_alone_and_the_others_still_decide():
    release = threading.Event()
    ran = []

    def hangs(event, options):
        release.wait(30)
        ran.append("hangs finished")
        return PolicyVerdict.allow()

    def quick(event, options):
        ran.append("quick")
        return PolicyVerdict.deny("quick says no")

    def exits(event, options):
        raise SystemExit(3)

    engine = _engine(
        "policies: [{use: first, timeout: 5}, {use: hangs, timeout: 0.3}, {use: quick}, "
        "{use: exits}]\n",
        # `first` still runs when the deciding thread starts waiting (for up to its 5 s); the
        # hung one after it must still be timed out at its own 0.3 s.
        _policy_plugin("first", lambda e, o: time.sleep(0.2) or PolicyVerdict.allow("fine")),
        _policy_plugin("hangs", hangs),
        _policy_plugin("quick", quick),
        _policy_plugin("exits", exits),
    )
    started = time.perf_counter()
    decision = engine.decide(make_event())
    assert time.perf_counter() - started < 3
    assert [(o.policy, o.allowed, o.error) for o in decision.outcomes] == [
        ("first", True, False),
        ("hangs", False, True),
        ("quick", False, False),
        ("exits", False, True),
    ]
    assert "no verdict after 0.3s" in decision.outcomes[1].reason
    assert "SystemExit" in decision.outcomes[3].reason
    release.set()  # the hung policy finishes later; its verdict no longer counts
    for _ in range(100):
        if "hangs finished" in ran:
            break
        time.sleep(0.01)
    assert ran == ["quick", "hangs finished"]
    again = engine.decide(make_event())  # the pool still works
    assert [o.policy for o in again.outcomes] == ["first", "hangs", "quick", "exits"]


class _ThreadRecordingFacts(StaticFacts):
    """Facts that note the thread reading the version's tags (and may take a while)."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        object.__setattr__(self, "readers", [])
        object.__setattr__(self, "delay", delay)

    @property
    def version_tags(self):  # type: ignore[override]
        self.readers.append(threading.current_thread())
        time.sleep(self.delay)
        return {"owner": "alice"}

    @version_tags.setter
    def version_tags(self, _value) -> None:  # StaticFacts' field default
        pass


def test_built_in_policies_decide_on_the_calling_thread_plugins_on_the_pool():
    seen = []

    def plugin_check(event, options):
        seen.append(threading.current_thread())
        event.facts.version_tags  # noqa: B018 - a fact read from the plugin's thread
        return PolicyVerdict.allow()

    engine = _engine(
        "policies: [{use: required-tags, with: {tags: [owner]}}, {use: mine}]\n",
        _policy_plugin("mine", plugin_check),
    )
    facts = _ThreadRecordingFacts()
    decision = engine.decide(make_event(facts=facts))
    assert decision.allowed
    assert facts.readers[0] is threading.current_thread()  # required-tags, built in
    assert seen[0] is not threading.current_thread()  # the plugin, on the pool
    assert facts.readers[1] is seen[0]


def test_a_plugin_policy_named_like_a_builtin_still_runs_on_the_pool():
    # Where a policy runs depends on who registered it, not on its name.
    seen = []

    def check(event, options):
        seen.append(threading.current_thread())
        return PolicyVerdict.allow()

    pm = create_plugin_manager(
        plugins=[_policy_plugin("required-tags", check)],
        autoload=False,
        disable=["builtin.required_tags"],
    )
    engine = PolicyEngine(pm, parse_config("policies: [{use: required-tags}]\n", path="s.yaml"))
    assert engine.decide(make_event()).allowed
    assert len(seen) == 1
    assert seen[0] is not threading.current_thread()


def test_a_built_in_policy_past_its_timeout_is_refused_naming_it():
    engine = _engine(
        "policies: [{use: required-tags, with: {tags: [owner]}, timeout: 0.1}, "
        "{use: require-signature}]\n"
    )
    decision = engine.decide(make_event(facts=_ThreadRecordingFacts(delay=0.3)))
    assert [(o.policy, o.allowed, o.error) for o in decision.outcomes] == [
        ("required-tags", False, True),
        ("require-signature", True, False),
    ]
    reason = decision.outcomes[0].reason
    assert "no verdict after 0.1s (it took 0.3" in reason
    assert "fail closed" in reason


def test_bounded_work_gives_up_at_the_deciding_policys_deadline():
    from mlflow_steward.governance.timeouts import PolicyTimeout, bounded, deciding_until

    release = threading.Event()
    assert bounded("quick", lambda: 7) == 7  # no policy deciding: run here
    started = time.monotonic()
    expected = r"no verdict after 0.2s \(the download did not finish\)"
    with deciding_until(started + 0.2, 0.2), pytest.raises(PolicyTimeout, match=expected):
        bounded("the download", lambda: release.wait(30))
    assert time.monotonic() - started < 2
    release.set()
    with deciding_until(time.monotonic() + 10, 10), pytest.raises(ZeroDivisionError):
        bounded("a division", lambda: 1 / 0)  # the work's own errors come through
    # The work sees the caller's context variables, and runs outside the deadline itself.
    from contextvars import ContextVar

    from mlflow_steward.governance import timeouts

    workspace: ContextVar[str] = ContextVar("workspace", default="default")
    workspace.set("team-a")
    with deciding_until(time.monotonic() + 10, 10):
        seen = bounded("a read", lambda: (workspace.get(), timeouts._deadline.get()))
    assert seen == ("team-a", None)


def test_missing_fact_is_a_deny():
    engine = _engine("policies: [{use: allowed-requirements, with: {deny: [tensorflow]}}]\n")
    decision = engine.decide(make_event(facts=StaticFacts(requirements=None)))
    assert not decision.allowed
    assert "cannot decide: no requirements.txt" in decision.outcomes[0].reason


def test_when_selects_actions_aliases_and_models():
    engine = _engine("""
policies:
  - use: required-tags
    when: {action: set_alias, alias: "prod*", model: "fraud-*"}
    with: {tags: [owner]}
""")
    untagged = StaticFacts()
    assert not engine.decide(
        make_event(model="fraud-eu", alias="production", facts=untagged)
    ).allowed
    assert (
        engine.decide(make_event(model="fraud-eu", alias="staging", facts=untagged)).outcomes == ()
    )
    assert (
        engine.decide(make_event(model="churn", alias="production", facts=untagged)).outcomes == ()
    )
    assert (
        engine.decide(
            make_event("set_model_version_tag", model="fraud-eu", facts=untagged)
        ).outcomes
        == ()
    )


def test_prompts_are_not_judged_by_model_policies():
    engine = _engine("policies: [require-signature]\n")
    event = make_event("create_model_version", facts=StaticFacts(signature=None, is_prompt=True))
    assert engine.decide(event).outcomes == ()


def test_enabled_by_default_policy_applies_without_config():
    plugin = _policy_plugin(
        "no-friday", lambda e, o: PolicyVerdict.deny("it is friday"), enabled_by_default=True
    )
    decision = _engine("", plugin).decide(make_event())
    assert [o.policy for o in decision.denials] == ["no-friday"]


def test_duplicate_policy_names_refused_naming_every_provider():
    first = _policy_plugin("require-signature", lambda e, o: PolicyVerdict.allow())
    with pytest.raises(PluginConflictError) as err:
        create_plugin_manager(plugins=[first], autoload=False)
    msg = str(err.value)
    assert "'require-signature'" in msg
    assert "builtin.require_signature" in msg
    assert "plugin_require_signature" in msg


def test_misspelt_hook_is_an_error():
    class Typo:
        @hookimpl
        def steward_polices(self):
            return []

    with pytest.raises(PluginLoadError, match="steward_polices"):
        create_plugin_manager(plugins=[Typo()], autoload=False)


def test_disabled_builtin_is_not_registered(monkeypatch):
    monkeypatch.setenv("MLFLOW_STEWARD_DISABLE_PLUGINS", "builtin.freeze_window, builtin.approvals")
    pm = create_plugin_manager(disable=["builtin.required_tags"], autoload=False)
    names = set(pm.hooks.policies())
    assert names == {
        "require-signature",
        "metric-threshold",
        "allowed-requirements",
        "require-identity",
        "protect-aliases",
        "deploy-requires-alias",
        "edge-bundle",
        "content-digest",
        "protect-prompt-markers",
    }
    assert pm.is_blocked("builtin.approvals")


def test_registration_hook_yielding_wrong_type_names_the_plugin():
    class Bad:
        @hookimpl
        def steward_policies(self):
            yield "require-everything"

    with pytest.raises(PluginLoadError, match=r"Bad.*yielded 'require-everything'"):
        create_plugin_manager(plugins=[Bad()], autoload=False)


def test_observers_are_isolated(caplog):
    seen = []

    class Broken:
        @hookimpl
        def steward_after_decision(self, event, decision):
            raise ValueError("observer bug")

    class Recorder:
        @hookimpl
        def steward_after_decision(self, decision):
            seen.append(decision.allowed)

    pm = create_plugin_manager(plugins=[Broken(), Recorder()], autoload=False)
    engine = PolicyEngine(pm, parse_config(""))
    decision = engine.decide(make_event())
    with caplog.at_level(logging.ERROR):
        pm.hooks.after_decision(event=decision.event, decision=decision)
    assert seen == [True]
    assert "Broken" in caplog.text
    assert "observers are isolated" in caplog.text


def test_resolve_actor_hook_first_result():
    class CI:
        @hookimpl
        def steward_resolve_actor(self, default):
            return f"ci:{default}"

    pm = create_plugin_manager(plugins=[CI()], autoload=False)
    assert pm.hooks.resolve_actor(default="bob") == "ci:bob"
    assert create_plugin_manager(autoload=False).hooks.resolve_actor(default="bob") == "bob"
