"""metric-threshold and approvals at their edges: bounds inclusive, the champion/challenger gate's
margins and ties, and which approvals count (expired, requester, author, artifacts, an earlier
model of the same name), each with its reason."""

from __future__ import annotations

import dataclasses
import time

import pytest

from mlflow_steward.config import parse_config
from mlflow_steward.governance.engine import PolicyEngine
from mlflow_steward.governance.policies import approvals, metric_threshold
from mlflow_steward.plugins.events import Approval, FactUnavailable
from mlflow_steward.plugins.manager import create_plugin_manager
from mlflow_steward.plugins.testing import StaticFacts, make_event

MT = {
    "metric": "acc",
    "min": None,
    "max": None,
    "source": "any",
    "beat_champion": False,
    "champion_margin": None,
    "champion_relative_margin": None,
    "strictly_better": False,
    "compare_to_alias": None,
    "higher_is_better": True,
}


def mt(facts, alias="production", **opts):
    event = make_event("set_alias", "fraud", alias=alias, facts=facts)
    return metric_threshold.check(event, {**MT, **opts})


def run(value, **kw):
    return StaticFacts(run_metrics={"acc": value}, **kw)


# -- metric-threshold ---------------------------------------------------------------------------


def test_metric_sources():
    facts = StaticFacts(run_metrics={"acc": 0.5}, evaluation_metrics={"acc": 0.9})
    assert metric_threshold.metric_value(facts, "acc", "any") == 0.9
    assert metric_threshold.metric_value(facts, "acc", "evaluation") == 0.9
    assert metric_threshold.metric_value(facts, "acc", "run") == 0.5
    only_run = StaticFacts(run_metrics={"acc": 1})
    assert metric_threshold.metric_value(only_run, "acc", "any") == 1.0
    assert isinstance(metric_threshold.metric_value(only_run, "acc", "any"), float)
    assert metric_threshold.metric_value(only_run, "acc", "evaluation") is None
    assert (
        metric_threshold.metric_value(StaticFacts(evaluation_metrics={"acc": 2}), "acc", "run")
        is None
    )
    assert metric_threshold.metric_value(StaticFacts(), "acc", "any") is None


def test_bounds_are_inclusive_and_reasons_name_them():
    assert mt(run(0.8), min=0.8).reason == "acc=0.8 meets >= 0.8"
    assert mt(run(0.8), min=0.8).allowed
    assert mt(run(0.9), max=0.9).reason == "acc=0.9 meets <= 0.9"
    assert mt(run(0.85), min=0.8, max=0.9).reason == "acc=0.85 meets >= 0.8 and <= 0.9"
    low = mt(run(0.7999999), min=0.8)
    assert (low.allowed, low.reason) == (False, "acc=0.8 is below the minimum 0.8")
    high = mt(run(0.95), min=0.1, max=0.9)
    assert (high.allowed, high.reason) == (False, "acc=0.95 is above the maximum 0.9")
    assert mt(run(0.123456789)).reason == "acc=0.123457"
    nan = mt(run(float("nan")), min=0.0)
    assert (nan.allowed, nan.reason) == (False, "acc is NaN")
    assert mt(run(0.5), min=0.0, max=0.0).reason == "acc=0.5 is above the maximum 0"


def test_a_missing_metric_or_version_cannot_pass():
    with pytest.raises(
        FactUnavailable,
        match=r"metric 'acc' was not logged \(run metrics\) for this version's source run or evaluation",
    ):
        mt(StaticFacts(), min=0.1, source="run")
    event = dataclasses.replace(make_event("set_alias", alias="p"), facts=None)
    verdict = metric_threshold.check(event, {**MT, "min": 0.1})
    assert (verdict.allowed, verdict.reason) == (False, "no model version to check")


def _holder(value, version="1"):
    return StaticFacts(run_metrics={"acc": value}, version=version)


def test_champion_gate_margins_and_ties():
    challenger = lambda v, **h: run(v, version="2", holders={"production": _holder(0.8, **h)})  # noqa: E731
    beat = mt(challenger(0.85), beat_champion=True)
    assert (beat.allowed, beat.reason) == (
        True,
        "acc=0.85; beats @production version 1 (0.8) by 0.05",
    )
    tie = mt(challenger(0.8), beat_champion=True)
    assert tie.allowed  # a tie is enough unless strictly better is asked
    strict = mt(challenger(0.8), beat_champion=True, strictly_better=True)
    assert (strict.allowed, strict.reason) == (
        False,
        "acc=0.8 does not beat the current @production (version 1, acc=0.8) by the required margin 0",
    )
    margin = mt(challenger(0.85), champion_margin=0.1)
    assert margin.reason == (
        "acc=0.85 does not beat the current @production (version 1, acc=0.8) by the required margin 0.1"
    )
    assert mt(challenger(0.9), champion_margin=0.1).allowed is (0.9 - 0.8 >= 0.1)
    assert mt(challenger(0.91), champion_margin=0.1).allowed
    # relative: 5% of 0.8 = 0.04 (the larger of the two margins counts)
    assert not mt(challenger(0.83), champion_relative_margin=0.05).allowed
    assert mt(challenger(0.85), champion_relative_margin=0.05).allowed
    assert not mt(challenger(0.85), champion_relative_margin=0.05, champion_margin=0.06).allowed
    assert not mt(challenger(0.85), champion_relative_margin=0.1, champion_margin=0.01).allowed
    # negative champions: the margin is relative to its size
    neg = run(-0.85, version="2", holders={"production": _holder(-1.0)})
    assert mt(neg, champion_relative_margin=0.1).allowed
    assert not mt(neg, champion_relative_margin=0.2).allowed
    # lower is better
    loss = run(0.7, version="2", holders={"production": _holder(0.8)})
    assert mt(loss, beat_champion=True, higher_is_better=False).allowed
    assert not mt(loss, beat_champion=True).allowed
    lower = mt(
        run(0.5, version="2", holders={"production": _holder(0.6)}),
        beat_champion=True,
        higher_is_better=False,
    )
    assert lower.reason == "acc=0.5; beats @production version 1 (0.6) by 0.1"
    # with bounds, the reasons join
    both = mt(challenger(0.85), min=0.5, beat_champion=True)
    assert both.reason == "acc=0.85 meets >= 0.5; beats @production version 1 (0.8) by 0.05"
    assert (
        mt(challenger(0.85), min=0.9, beat_champion=True).reason
        == "acc=0.85 is below the minimum 0.9"
    )


def test_champion_gate_without_a_champion():
    nobody = mt(run(0.5, version="2"), beat_champion=True)
    assert (nobody.allowed, nobody.reason) == (
        True,
        "acc=0.5; no version holds @production yet: nothing to beat",
    )
    itself = mt(run(0.5, version="1", holders={"production": _holder(0.9)}), beat_champion=True)
    assert itself.reason == "acc=0.5; already the holder of @production"
    other = mt(
        run(0.5, version="2", holders={"staging": _holder(0.9)}),
        alias="production",
        beat_champion=True,
        compare_to_alias="staging",
    )
    assert not other.allowed
    assert "the current @staging (version 1" in other.reason
    with pytest.raises(
        FactUnavailable, match=r"needs an alias to compare with \(set compare_to_alias\)"
    ):
        mt(run(0.5), alias=None, beat_champion=True)
    with pytest.raises(
        FactUnavailable,
        match=r"the current @production \(version 1\) has no metric 'acc' to compare with",
    ):
        mt(
            run(0.5, version="2", holders={"production": StaticFacts(version="1")}),
            beat_champion=True,
        )
    # no gate asked: the holder is not even looked at
    assert mt(
        run(0.5, version="2", holders={"production": StaticFacts(version="1")}), min=0.1
    ).allowed


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (
            {},
            "give `min`, `max`, or a champion/challenger gate (beat_champion, champion_margin, champion_relative_margin)",
        ),
        ({"champion_margin": -0.1}, "champion_margin cannot be negative"),
        ({"champion_relative_margin": -1}, "champion_relative_margin cannot be negative"),
    ],
)
def test_metric_threshold_validation(opts, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        metric_threshold.validate({**MT, **opts})


def test_metric_threshold_gates_that_pass_validation():
    for opts in (
        {"min": 0},
        {"max": 1},
        {"beat_champion": True},
        {"champion_margin": 0},
        {"champion_relative_margin": 0},
    ):
        metric_threshold.validate({**MT, **opts})
    eng = PolicyEngine(
        create_plugin_manager(autoload=False),
        parse_config("policies: [{use: metric-threshold, with: {metric: acc, min: 0.5}}]"),
    )
    assert dict(eng.policies[0].options) == {**MT, "min": 0.5}


# -- approvals ----------------------------------------------------------------------------------

AP = {
    "count": 1,
    "expires_after": 3600.0,
    "exclude_requester": True,
    "exclude_author": True,
    "names": "casefold",
}


def review(
    who,
    verdict="approve",
    *,
    age=0.0,
    digest="sha256:d",
    model_created=1,
    action="set_alias",
    alias="production",
    comment="",
):
    return Approval(
        "fraud",
        "3",
        alias,
        who,
        comment,
        time.time() - age,
        verdict,
        action=action,
        model_created=model_created,
        digest=digest,
    )


def ap(reviews, action="set_alias", actor="promoter", alias="production", **opts):
    facts = StaticFacts(
        version="3",
        author="Author",
        registrant="registrar",
        approval_list=list(reviews),
        content_digest="sha256:d",
    )
    event = make_event(action, "fraud", actor=actor, alias=alias, facts=facts)
    return approvals.check(event, {**AP, **opts})


def test_approvals_count_distinct_current_reviewers():
    ok = ap([review("bob")])
    assert (ok.allowed, ok.reason) == (True, "approved by bob")
    two = ap([review("bob"), review("BOB"), review("carol")], count=2)
    assert (two.allowed, two.reason) == (True, "approved by bob, carol")
    short = ap([review("bob"), review("Bob")], count=2)
    assert (short.allowed, short.reason) == (
        False,
        "1 of 2 required approvals for @production (bob); approve with "
        "`steward approve models:/fraud/3 --alias production`",
    )
    exact = ap([review("bob"), review("Bob")], count=2, names="exact")
    assert (exact.allowed, exact.reason) == (True, "approved by Bob, bob")
    none = ap([])
    assert (
        none.reason
        == "0 of 1 required approvals for @production; approve with `steward approve models:/fraud/3 --alias production`"
    )


def test_approvals_that_do_not_count_are_named():
    verdict = ap(
        [
            review("old", age=3601),
            review("req", "request"),
            review("promoter"),
            review("author"),
            review("registrar"),
            review("legacy", digest=None),
            review("other-artifacts", digest="sha256:0123456789abcdef0123456789"),
            review("earlier-model", model_created=0),
        ]
    )
    assert not verdict.allowed
    assert verdict.reason == (
        "0 of 1 required approvals for @production; not counted: old (expired), promoter (the "
        "requester), author (the run's author), registrar (the run's author), legacy (reviewed "
        "before reviews were bound to content), other-artifacts (reviewed other artifacts: "
        "sha256:0123456789ab), 1 approval(s) of an earlier model named 'fraud' (deleted, or "
        "renamed away); approve with `steward approve models:/fraud/3 --alias production`"
    )
    req = ap([review("req", "request"), review("req")])
    assert "req (the requester)" in req.reason
    # an expired request no longer excludes its requester
    assert ap([review("req", "request", age=4000), review("req")]).allowed
    # with the exclusions off, requester and author count
    assert ap([review("promoter")], exclude_requester=False).allowed
    assert ap([review("author")], exclude_author=False).allowed
    assert ap([review("bob", age=3599)]).allowed
    counted = ap([review("bob"), review("old", age=9999)])
    assert counted.reason == "approved by bob; not counted: old (expired)"


def test_a_live_rejection_blocks():
    rejected = ap(
        [review("bob"), review("carol", "reject", comment="bad data"), review("dan", "reject")]
    )
    assert (rejected.allowed, rejected.reason) == (False, "rejected for @production by dan")
    with_comment = ap([review("carol", "reject", comment="bad data")])
    assert with_comment.reason == "rejected for @production by carol: bad data"
    assert ap([review("bob"), review("carol", "reject", age=4000)]).allowed
    assert ap([review("bob"), review("carol", "reject", model_created=0)]).allowed


def test_other_actions_and_aliases_are_counted_apart():
    assert not ap([review("bob", alias="staging")]).allowed
    assert not ap([review("bob", action="delete_alias")]).allowed
    other = ap([review("bob", action="delete_alias")], action="delete_alias")
    assert other.allowed
    short = ap([], action="delete_alias")
    assert short.reason == (
        "0 of 1 required approvals for @production (delete_alias); approve with `steward approve "
        "models:/fraud/3 --alias production --action delete_alias`"
    )


def test_requests_and_reviews():
    req = ap([], action="request_approval", actor="alice")
    assert (req.allowed, req.reason) == (True, "alice may request approval")
    assert ap([], action="approve", actor="bob").reason == "bob may approve"
    assert ap([], action="reject", actor="bob").reason == "bob may reject"
    author = ap([], action="approve", actor="AUTHOR")
    assert (author.allowed, author.reason) == (
        False,
        "AUTHOR trained or registered this version (author of its run or its registrant) and cannot approve it",
    )
    assert ap([], action="approve", actor="AUTHOR", exclude_author=False).allowed
    requester = ap([review("alice", "request")], action="reject", actor="Alice")
    assert (requester.allowed, requester.reason) == (
        False,
        "Alice requested this promotion and cannot reject it (four eyes)",
    )
    assert ap(
        [review("alice", "request")], action="reject", actor="Alice", exclude_requester=False
    ).allowed
    assert ap([review("alice", "request", age=4000)], action="approve", actor="alice").allowed
    # a request for another action does not exclude from reviewing this one
    other = make_event(
        "approve",
        "fraud",
        actor="alice",
        alias="production",
        context={"review_action": "delete_alias"},
        facts=StaticFacts(approval_list=[review("alice", "request")]),
    )
    assert approvals.check(other, AP).allowed
    assert approvals.reviewed_action(other) == "delete_alias"
    assert approvals.reviewed_action(make_event("reject")) == "set_alias"
    assert approvals.reviewed_action(make_event("set_alias")) == "set_alias"
    assert approvals.reviewed_action(make_event("delete_alias")) == "delete_alias"


def test_artifacts_are_read_only_when_an_approval_is_bound_to_them():
    unreadable = StaticFacts(version="3", content_digest=None)  # reading them fails
    event = make_event("set_alias", "fraud", alias="production", facts=unreadable)
    verdict = approvals.check(event, AP)
    assert (verdict.allowed, verdict.reason.split(";")[0]) == (
        False,
        "0 of 1 required approvals for @production",
    )


def test_approvals_need_a_version_and_an_alias():
    no_alias = ap([review("bob")], alias=None)
    assert (no_alias.allowed, no_alias.reason) == (
        False,
        "approvals are counted per version and alias",
    )
    event = dataclasses.replace(make_event("set_alias", alias="p"), facts=None)
    assert not approvals.check(event, AP).allowed
    with pytest.raises(ValueError, match="count must be at least 1"):
        approvals.validate({**AP, "count": 0})
    approvals.validate(AP)


def test_approvals_defaults():
    eng = PolicyEngine(create_plugin_manager(autoload=False), parse_config("policies: [approvals]"))
    assert dict(eng.policies[0].options) == {**AP, "expires_after": 7 * 86400.0}
