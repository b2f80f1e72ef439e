"""The smaller built-in policies at their edges: each verdict and its reason, option defaults
(through the engine, as a configuration without options gets them), and where each applies.
tests/test_policies.py has the main cases; these are the ones the mutation run found untested."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

import pytest

from mlflow_steward.config import parse_config
from mlflow_steward.governance.engine import PolicyEngine
from mlflow_steward.governance.policies import (
    content_digest,
    deploy_requires_alias,
    freeze_window,
    prompt_markers,
    protect_aliases,
    require_identity,
    require_signature,
    required_tags,
)
from mlflow_steward.plugins.events import ALIASES_HELD, FactUnavailable
from mlflow_steward.plugins.manager import create_plugin_manager
from mlflow_steward.plugins.testing import StaticFacts, make_event


def bare(action: str = "set_alias", model: str = "model", **fields):
    """An event without facts (make_event gives every event in-memory ones)."""
    return dataclasses.replace(make_event(action, model, **fields), facts=None)


def engine(config: str = "") -> PolicyEngine:
    return PolicyEngine(create_plugin_manager(autoload=False), parse_config(config))


def verdicts(config: str, event) -> dict[str, tuple[bool, str]]:
    return {o.policy: (o.allowed, o.reason) for o in engine(config).decide(event).outcomes}


# -- on by default ------------------------------------------------------------------------------


def test_three_policies_are_on_by_default_for_their_actions():
    eng = engine()
    assert sorted(p.label for p in eng.policies) == [
        "content-digest",
        "protect-aliases",
        "protect-prompt-markers",
    ]
    on = {
        action: sorted(p.label for p in eng.applicable(make_event(action, facts=StaticFacts())))
        for action in (
            "create_model_version",
            "set_alias",
            "delete_model_version",
            "delete_registered_model",
            "rename_registered_model",
            "set_model_version_tag",
            "delete_registered_model_tag",
            "deploy",
            "approve",
            "request_approval",
            "transition_stage",
            "delete_alias",
        )
    }
    assert on == {
        "create_model_version": ["content-digest", "protect-prompt-markers"],
        "set_alias": ["content-digest"],
        "delete_model_version": ["protect-aliases"],
        "delete_registered_model": ["protect-aliases"],
        "rename_registered_model": ["protect-aliases"],
        "set_model_version_tag": ["protect-prompt-markers"],
        "delete_registered_model_tag": ["protect-prompt-markers"],
        "deploy": ["content-digest"],
        "approve": ["content-digest"],
        "request_approval": ["content-digest"],
        "transition_stage": ["content-digest"],
        "delete_alias": [],
    }
    # prompts: protect-prompt-markers applies to them too, the others not
    prompt = make_event("create_model_version", facts=StaticFacts(), context={"is_prompt": True})
    assert [p.label for p in eng.applicable(prompt)] == ["protect-prompt-markers"]


def test_configured_policies_apply_to_their_default_actions():
    eng = engine(
        "policies: [require-signature, required-tags-x, require-identity]".replace(
            "required-tags-x", "{use: required-tags, with: {tags: [owner]}}"
        )
    )
    labels = {
        action: sorted(p.label for p in eng.applicable(make_event(action, facts=StaticFacts())))
        for action in ("create_model_version", "set_alias", "transition_stage", "deploy", "approve")
    }
    assert labels["create_model_version"] == [
        "content-digest",
        "protect-prompt-markers",
        "require-identity",
        "require-signature",
    ]
    assert labels["set_alias"] == [
        "content-digest",
        "require-identity",
        "require-signature",
        "required-tags",
    ]
    assert labels["transition_stage"] == [
        "content-digest",
        "require-identity",
        "require-signature",
        "required-tags",
    ]
    assert "require-signature" not in labels["deploy"]
    assert "require-identity" in labels["approve"]


# -- require-signature --------------------------------------------------------------------------


def test_require_signature_reasons():
    check = require_signature.check
    assert check(bare(), {"input_example": False}) == check(bare(), {"input_example": True})
    assert check(bare(), {"input_example": False}).reason == "no model version to check"
    assert not check(bare(), {"input_example": False}).allowed
    none = check(make_event(facts=StaticFacts(signature=None)), {"input_example": False})
    assert not none.allowed
    assert none.reason == (
        "the model has no signature; log it with "
        "`signature=mlflow.models.infer_signature(X, model.predict(X))`"
    )
    empty = check(make_event(facts=StaticFacts(signature={})), {"input_example": False})
    assert not empty.allowed
    plain = check(make_event(facts=StaticFacts()), {"input_example": False})
    assert (plain.allowed, plain.reason) == (True, "signature present")
    no_example = check(make_event(facts=StaticFacts()), {"input_example": True})
    assert (no_example.allowed, no_example.reason) == (
        False,
        "the model has no input example; log it with `input_example=...`",
    )
    both = check(make_event(facts=StaticFacts(has_input_example=True)), {"input_example": True})
    assert (both.allowed, both.reason) == (True, "signature present with input example")
    # the default: no input example needed
    event = make_event("create_model_version", facts=StaticFacts())
    assert verdicts("policies: [require-signature]", event)["require-signature"] == (
        True,
        "signature present",
    )


# -- required-tags ------------------------------------------------------------------------------


def _tags_event(model=None, version=None, facts=True):
    if not facts:
        return bare()
    return make_event(facts=StaticFacts(model_tags=model or {}, version_tags=version or {}))


def test_required_tags_scopes_and_reasons():
    opts = {"tags": ["owner"], "values": {}, "scope": "version"}
    check = required_tags.check
    missing = check(_tags_event(model={"owner": "a"}), opts)
    assert (missing.allowed, missing.reason) == (False, "missing tag owner on the version")
    assert check(_tags_event(version={"owner": "a"}), opts).reason == "tags present: owner"
    assert check(_tags_event(version={"owner": "a"}), opts).allowed
    blank = check(_tags_event(version={"owner": "  "}), opts)
    assert not blank.allowed
    model = {**opts, "scope": "model"}
    assert check(_tags_event(model={"owner": "a"}), model).allowed
    assert check(_tags_event(version={"owner": "a"}), model).reason == (
        "missing tag owner on the registered model"
    )
    either = {**opts, "scope": "either", "tags": ["owner", "team"]}
    assert check(_tags_event(model={"owner": "a"}, version={"team": "b"}), either).allowed
    two = check(_tags_event(), either)
    assert two.reason == "missing tags owner, team on the version or registered model"
    # the version's tag wins over the model's for values
    values = {"tags": [], "values": {"risk": ["low", 1]}, "scope": "either"}
    mixed = check(_tags_event(model={"risk": "low"}, version={"risk": "high"}), values)
    assert (mixed.allowed, mixed.reason) == (False, "tag risk='high' is not one of low, 1")
    assert check(_tags_event(version={"risk": "1"}), values).allowed
    assert check(_tags_event(), values).reason == "tags present: (none required)"
    both = check(_tags_event(version={"risk": "x"}), {**values, "tags": ["owner"]})
    assert (
        both.reason
        == "missing tag owner on the version or registered model; tag risk='x' is not one of low, 1"
    )
    # no facts: no tags
    assert check(_tags_event(facts=False), opts).reason == "missing tag owner on the version"


def test_required_tags_defaults_and_validation():
    event = make_event(alias="production", facts=StaticFacts(model_tags={"owner": "a"}))
    assert verdicts("policies: [{use: required-tags, with: {tags: [owner]}}]", event)[
        "required-tags"
    ] == (False, "missing tag owner on the version")
    with pytest.raises(ValueError, match=r"values.risk must be a non-empty list of allowed values"):
        required_tags.validate({"tags": [], "values": {"risk": []}})
    with pytest.raises(ValueError, match=r"values.risk must be a non-empty list"):
        required_tags.validate({"tags": [], "values": {"risk": "low"}})
    with pytest.raises(ValueError, match=r"name at least one tag under `tags` or `values`"):
        required_tags.validate({"tags": [], "values": {}})
    required_tags.validate({"tags": ["a"], "values": {}})
    required_tags.validate({"tags": [], "values": {"a": ["b"]}})


# -- require-identity ---------------------------------------------------------------------------


def test_require_identity():
    check = require_identity.check
    opts = {"anonymous": ["Anonymous", "guest"]}
    for actor in ("", "anonymous", "ANONYMOUS", "Guest"):
        verdict = check(make_event("deploy", actor=actor), opts)
        assert not verdict.allowed, actor
        assert verdict.reason.startswith(
            f"deploy needs an authenticated identity, but the actor is {actor or 'empty'!r}; sign in"
        )
        assert "MLFLOW_STEWARD_AUTH=basic" in verdict.reason
    ok = check(make_event(actor="alice"), opts)
    assert (ok.allowed, ok.reason) == (True, "actor alice")
    # default: "anonymous" only; every governed action
    assert not verdicts(
        "policies: [require-identity]", make_event("delete_alias", actor="anonymous")
    )["require-identity"][0]
    assert verdicts("policies: [require-identity]", make_event(actor="guest"))["require-identity"][
        0
    ]


# -- protect-aliases ----------------------------------------------------------------------------


def test_protect_aliases_names_what_and_which_aliases():
    check = protect_aliases.check
    held = {ALIASES_HELD: {"production": "3", "Champion": "3", "dev": "3"}}
    version = check(
        make_event("delete_model_version", "fraud", version="3", context=held), {"aliases": ["*"]}
    )
    assert (version.allowed, version.reason) == (
        False,
        "version 3 of fraud holds @Champion (version 3), @dev (version 3), @production (version 3) "
        "and cannot be deleted; move or delete the alias first",
    )
    model = check(
        make_event("delete_registered_model", "fraud", context=held),
        {"aliases": ["prod*", "CHAMP*"]},
    )
    assert model.reason == (
        "registered model fraud holds @Champion (version 3), @production (version 3) and cannot be "
        "deleted; move or delete the alias first"
    )
    renamed = check(
        make_event("rename_registered_model", "fraud", context=held), {"aliases": ["dev"]}
    )
    assert renamed.reason == (
        "registered model fraud holds @dev (version 3) and cannot be renamed; move or delete the "
        "alias first"
    )
    free = check(make_event("delete_model_version", "fraud", context=held), {"aliases": ["x"]})
    assert (free.allowed, free.reason) == (True, "holds no protected alias")
    assert check(make_event("delete_model_version", "fraud"), {"aliases": ["*"]}).allowed
    # on by default, every alias protected
    event = make_event(
        "delete_model_version", "fraud", version="3", context={ALIASES_HELD: {"x": "3"}}
    )
    assert not verdicts("", event)["protect-aliases"][0]


# -- deploy-requires-alias ----------------------------------------------------------------------


DEPLOY_OPTS = {"alias": "production", "production_only": True, "allow_rollback": True}


def _deploy(version="3", facts=None, **context):
    return (bare if facts is None else make_event)(
        "deploy",
        "fraud",
        version=version,
        facts=facts,
        context={"target": "onprem", "deployment": "web", **context},
    )


def test_deploy_requires_alias():
    check = deploy_requires_alias.check
    holder = StaticFacts(holders={"production": StaticFacts(version="3")})
    not_prod = check(_deploy(), DEPLOY_OPTS)
    assert (not_prod.allowed, not_prod.reason) == (True, "deployment 'web' is not production")
    every = {**DEPLOY_OPTS, "production_only": False}
    ok = check(_deploy(facts=holder), every)
    assert (ok.allowed, ok.reason) == (True, "version 3 holds @production")
    assert check(_deploy(facts=holder, production=True), DEPLOY_OPTS).allowed
    other = check(_deploy(version="2", facts=holder, production=True), DEPLOY_OPTS)
    assert (other.allowed, other.reason) == (
        False,
        "version 2 does not hold @production (version 3 does); production deployment 'web' on "
        "onprem serves only models:/fraud@production",
    )
    nobody = check(_deploy(facts=StaticFacts(), production=True), DEPLOY_OPTS)
    assert (nobody.allowed, nobody.reason) == (
        False,
        "no version of 'fraud' holds @production; promote one before deploying it to onprem "
        "deployment 'web'",
    )
    staging = {**DEPLOY_OPTS, "alias": "staging"}
    assert not check(_deploy(facts=holder, production=True), staging).allowed
    back = check(_deploy(version="1", facts=holder, production=True, rollback=True), DEPLOY_OPTS)
    assert (back.allowed, back.reason) == (
        True,
        "rolling back to version 1, which this deployment served before",
    )
    strict = {**DEPLOY_OPTS, "allow_rollback": False}
    assert not check(
        _deploy(version="1", facts=holder, production=True, rollback=True), strict
    ).allowed
    with pytest.raises(FactUnavailable, match="no facts about models:/fraud/3"):
        check(_deploy(production=True), DEPLOY_OPTS)
    # defaults: production only, @production, rollbacks allowed
    cfg = "policies: [deploy-requires-alias]"
    assert verdicts(cfg, _deploy(version="2", facts=holder))["deploy-requires-alias"][0]
    assert not verdicts(cfg, _deploy(version="2", facts=holder, production=True))[
        "deploy-requires-alias"
    ][0]
    assert verdicts(cfg, _deploy(version="2", facts=holder, production=True, rollback=True))[
        "deploy-requires-alias"
    ][0]
    assert verdicts(cfg, _deploy(facts=holder, production=True))["deploy-requires-alias"][0]


# -- protect-prompt-markers ---------------------------------------------------------------------


def test_prompt_markers():
    check = prompt_markers.check
    plain = check(make_event("create_model_version", "fraud"), {})
    assert (plain.allowed, plain.reason) == (True, "no prompt markers")
    marked = make_event(
        "create_model_version", "fraud", context={"prompt_markers": ["mlflow.prompt.text", "x"]}
    )
    refused = check(marked, {})
    assert (refused.allowed, refused.reason) == (
        False,
        "'fraud' is not a prompt (it was not created as one), so its versions cannot carry "
        "prompt markers (mlflow.prompt.text, x)",
    )
    prompt = make_event(
        "create_model_version", "p", context={"prompt_markers": ["x"], "is_prompt": True}
    )
    assert check(prompt, {}).reason == "a version of a prompt carries prompt markers"
    assert check(prompt, {}).allowed
    for action, verb in (
        ("set_model_version_tag", "set"),
        ("set_registered_model_tag", "set"),
        ("delete_model_version_tag", "deleted"),
        ("delete_registered_model_tag", "deleted"),
    ):
        verdict = check(make_event(action, tag_key=" MLflow.Prompt.Is_Prompt "), {})
        assert (verdict.allowed, verdict.reason) == (
            False,
            f"prompt marker ' MLflow.Prompt.Is_Prompt ' cannot be {verb} after the model is "
            "created: whether a model is a prompt is fixed when MLflow creates it",
        )
    assert (
        check(make_event("set_model_version_tag", tag_key="owner"), {}).reason
        == "not a prompt marker"
    )
    assert check(make_event("set_model_version_tag"), {}).allowed


# -- content-digest -----------------------------------------------------------------------------


def test_content_digest():
    check = content_digest.check
    assert check(bare("set_alias"), {}) == check(bare("create_model_version"), {})
    assert check(bare("set_alias"), {}).reason == "no model version to check"
    assert not check(bare("set_alias"), {}).allowed
    created = check(
        make_event("create_model_version", facts=StaticFacts(content_digest="sha256:ab")), {}
    )
    assert (created.allowed, created.reason) == (True, "artifacts hashed: sha256:ab")
    with pytest.raises(FactUnavailable):
        check(make_event("create_model_version", facts=StaticFacts(content_digest=None)), {})
    unrecorded = check(make_event("set_alias", facts=StaticFacts()), {})
    assert unrecorded.allowed
    assert unrecorded.reason == (
        "no digest was recorded at registration (no steward.content_digest tag: registered "
        "without steward or before 0.2); reviews still bind to the artifacts as they are now"
    )
    same = StaticFacts(content_digest="sha256:a", recorded_digest="sha256:a")
    assert check(make_event("set_alias", facts=same), {}).reason == (
        "artifacts match the digest recorded at registration (sha256:a)"
    )
    changed = StaticFacts(
        version="4",
        content_digest="sha256:b",
        recorded_digest="sha256:a",
        changed=["MLmodel (changed)", "x (new)"],
    )
    verdict = check(make_event("set_alias", "fraud", facts=changed), {})
    assert (verdict.allowed, verdict.reason) == (
        False,
        "the artifacts of version 4 changed since it was registered (MLmodel (changed), x (new)); "
        "register the new artifacts as a new version; `steward verify models:/fraud/4` shows the "
        "difference",
    )


# -- freeze-window ------------------------------------------------------------------------------


def _at(text: str):
    return make_event(time=datetime.fromisoformat(text))


def test_freeze_window_weekly_bounds_are_inclusive():
    opts = {"timezone": "UTC", "windows": [{"days": ["fri"], "from": "16:00", "to": "18:00"}]}
    check = freeze_window.check
    # 2026-12-04 is a Friday
    assert not check(_at("2026-12-04T16:00:00+00:00"), opts).allowed
    assert not check(_at("2026-12-04T18:00:00+00:00"), opts).allowed
    assert check(_at("2026-12-04T15:59:59+00:00"), opts).allowed
    assert check(_at("2026-12-04T18:00:01+00:00"), opts).allowed
    assert check(_at("2026-12-03T17:00:00+00:00"), opts).allowed  # Thursday
    refused = check(_at("2026-12-04T17:30:00+00:00"), opts)
    assert refused.reason == (
        "promotions are frozen now (2026-12-04 17:30 UTC): window 1 (fri 16:00:00-18:00:00)"
    )
    assert check(_at("2026-12-04T19:00:00+00:00"), opts).reason == "outside every freeze window"


def test_freeze_window_defaults_days_from_and_to():
    check = freeze_window.check
    every_day = {"timezone": "UTC", "windows": [{"from": "22:00"}]}
    refused = check(_at("2026-12-06T23:59:59+00:00"), every_day)  # a Sunday, to the end of day
    assert refused.reason == (
        "promotions are frozen now (2026-12-06 23:59 UTC): window 1 "
        "(mon, tue, wed, thu, fri, sat, sun 22:00:00-23:59:59)"
    )
    assert check(_at("2026-12-06T21:59:59+00:00"), every_day).allowed
    morning = {"timezone": "UTC", "windows": [{"days": ["Monday", "SAT"], "to": "08:00"}]}
    assert not check(_at("2026-12-07T00:00:00+00:00"), morning).allowed  # Monday midnight
    assert not check(_at("2026-12-05T08:00:00+00:00"), morning).allowed  # Saturday
    assert check(_at("2026-12-05T08:00:01+00:00"), morning).allowed
    assert (
        "window 1 (Monday, SAT 00:00:00-08:00:00)"
        in check(_at("2026-12-07T01:00:00+00:00"), morning).reason
    )


def test_freeze_window_yaml_sexagesimal_times_and_timezones():
    # YAML 1.1 reads 16:30 unquoted as 990 (minutes): taken back to 16:30
    cfg = parse_config(
        "policies: [{use: freeze-window, with: {timezone: Europe/Berlin, windows: [{from: 16:30, to: 17:05}]}}]"
    )
    window = cfg.policies[0].options["windows"][0]
    assert (window["from"], window["to"]) == (990, 1025)
    opts = {"timezone": "Europe/Berlin", "windows": [window]}
    check = freeze_window.check
    inside = check(_at("2026-12-04T15:30:00+00:00"), opts)  # 16:30 in Berlin (UTC+1)
    assert inside.reason == (
        "promotions are frozen now (2026-12-04 16:30 Europe/Berlin): window 1 "
        "(mon, tue, wed, thu, fri, sat, sun 16:30:00-17:05:00)"
    )
    assert check(_at("2026-12-04T16:05:00+00:00"), opts).allowed is False
    assert check(_at("2026-12-04T16:06:00+00:00"), opts).allowed
    assert check(_at("2026-12-04T15:29:00+00:00"), opts).allowed


def test_freeze_window_dated_windows():
    opts = {
        "timezone": "Europe/Berlin",
        "windows": [
            {"start": "2026-12-20T00:00", "end": "2027-01-02T00:00"},
            {"start": datetime(2027, 3, 1, tzinfo=UTC), "end": "2027-03-02T00:00+00:00"},
        ],
    }
    check = freeze_window.check
    assert not check(_at("2026-12-19T23:00:00+00:00"), opts).allowed  # midnight in Berlin
    assert check(_at("2026-12-19T22:59:59+00:00"), opts).allowed
    assert check(_at("2027-01-01T23:00:00+00:00"), opts).allowed  # the end is excluded
    assert not check(_at("2027-01-01T22:59:59+00:00"), opts).allowed
    second = check(_at("2027-03-01T00:00:00+00:00"), opts)
    assert second.reason == (
        "promotions are frozen now (2027-03-01 01:00 Europe/Berlin): window 2 "
        "(2027-03-01 00:00:00+00:00 to 2027-03-02T00:00+00:00)"
    )
    # an aware start keeps its own zone: 2027-03-01T00:00 UTC is 01:00 in Berlin
    assert check(_at("2027-02-28T23:30:00+00:00"), opts).allowed
    first = check(_at("2026-12-25T12:00:00+00:00"), opts)
    assert first.reason.endswith("window 1 (2026-12-20T00:00 to 2027-01-02T00:00)")


@pytest.mark.parametrize(
    ("windows", "timezone", "message"),
    [
        (
            [{"from": "10:00"}],
            "Mars/Olympus",
            "unknown timezone 'Mars/Olympus' (use an IANA name like Europe/Berlin)",
        ),
        ([{"from": "10:00"}], "../etc", "unknown timezone '../etc'"),
        (["fri"], "UTC", "window 1 must be a mapping"),
        (
            [{"start": "2026-01-01"}],
            "UTC",
            "window 1: a dated window has exactly `start` and `end`",
        ),
        ([{"end": "2026-01-01"}], "UTC", "window 1: a dated window has exactly `start` and `end`"),
        (
            [{"start": "2026-01-01", "end": "2026-01-02", "days": ["mon"]}],
            "UTC",
            "exactly `start` and `end`",
        ),
        (
            [{"start": "2026-01-02", "end": "2026-01-02"}],
            "UTC",
            "window 1: start must be before end",
        ),
        (
            [{"start": "2026-01-03", "end": "2026-01-02"}],
            "UTC",
            "window 1: start must be before end",
        ),
        (
            [{"start": "soon", "end": "2026-01-02"}],
            "UTC",
            "'soon' is not a date/time like 2026-12-20T00:00",
        ),
        (
            [{"days": ["mon"], "at": "x"}],
            "UTC",
            "window 1: use `start`/`end`, or `days`/`from`/`to` (unknown: at)",
        ),
        ([{"b": 1, "a": 2}], "UTC", "(unknown: a, b)"),
        ([{}], "UTC", "window 1: use `start`/`end`, or `days`/`from`/`to` (unknown: empty window)"),
        (
            [{"from": "01:00"}, {"days": ["mon", "funday"]}],
            "UTC",
            "window 2: unknown day 'funday'; use mon, tue, wed, thu, fri, sat, sun",
        ),
        ([{"from": "teatime"}], "UTC", "'teatime' is not a time of day like 16:30"),
        ([{"to": "25:00"}], "UTC", "'25:00' is not a time of day like 16:30"),
    ],
)
def test_freeze_window_validation(windows, timezone, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        freeze_window.validate({"timezone": timezone, "windows": windows})


def test_freeze_window_valid_windows_pass_validation():
    freeze_window.validate(
        {
            "timezone": "UTC",
            "windows": [
                {"start": "2026-01-01", "end": "2026-01-02"},
                {"days": ["Mon", "friday"], "from": 960, "to": "18:00"},
                {"to": "08:00"},
            ],
        }
    )
    # the default timezone is UTC
    cfg = "policies: [{use: freeze-window, with: {windows: [{days: [fri], from: '16:00', to: '18:00'}]}}]"
    event = make_event(time=datetime(2026, 12, 4, 17, 0, tzinfo=UTC))
    allowed, reason = verdicts(cfg, event)["freeze-window"]
    assert not allowed
    assert "(2026-12-04 17:00 UTC)" in reason
