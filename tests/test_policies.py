"""Each built-in policy's verdicts, with in-memory facts."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from mlflow_steward.config import parse_config
from mlflow_steward.governance.engine import PolicyEngine
from mlflow_steward.governance.events import Approval
from mlflow_steward.plugins.manager import create_plugin_manager
from mlflow_steward.plugins.testing import StaticFacts, make_event


def decide(config: str, event):
    engine = PolicyEngine(create_plugin_manager(autoload=False), parse_config(config))
    return engine.decide(event)


def reasons(decision):
    return " | ".join(o.reason for o in decision.outcomes)


def test_require_signature_with_input_example():
    cfg = "policies: [{use: require-signature, with: {input_example: true}}]"
    no_example = decide(cfg, make_event("create_model_version", facts=StaticFacts()))
    assert not no_example.allowed
    assert "no input example" in reasons(no_example)
    assert decide(
        cfg, make_event("create_model_version", facts=StaticFacts(has_input_example=True))
    ).allowed


def test_required_tags_values_and_scope():
    cfg = """
policies:
  - use: required-tags
    with: {tags: [owner], values: {risk: [low, medium]}, scope: either}
"""
    bad = decide(
        cfg,
        make_event(
            alias="production",
            facts=StaticFacts(model_tags={"owner": "alice"}, version_tags={"risk": "high"}),
        ),
    )
    assert not bad.allowed
    assert "tag risk='high' is not one of low, medium" in reasons(bad)
    good = decide(
        cfg,
        make_event(
            alias="production",
            facts=StaticFacts(model_tags={"owner": "alice"}, version_tags={"risk": "low"}),
        ),
    )
    assert good.allowed
    blank = decide(
        cfg, make_event(alias="production", facts=StaticFacts(version_tags={"owner": "  "}))
    )
    assert "missing tag owner" in reasons(blank)


def champion(value, version="3"):
    return StaticFacts(run_metrics={"accuracy": value}, version=version)


@pytest.mark.parametrize(
    ("challenger", "holder", "allowed", "fragment"),
    [
        (0.95, None, True, "no version holds @production yet"),
        (0.95, 0.90, True, "beats @production version 3"),
        (0.905, 0.90, False, "does not beat the current @production (version 3, accuracy=0.9)"),
        (0.75, None, False, "accuracy=0.75 is below the minimum 0.8"),
    ],
)
def test_metric_threshold_champion_challenger(challenger, holder, allowed, fragment):
    cfg = """
policies:
  - use: metric-threshold
    with: {metric: accuracy, min: 0.8, champion_margin: 0.01}
"""
    holders = {"production": champion(holder)} if holder is not None else {}
    facts = StaticFacts(run_metrics={"accuracy": challenger}, holders=holders, version="4")
    decision = decide(cfg, make_event(alias="production", version="4", facts=facts))
    assert decision.allowed is allowed
    assert fragment in reasons(decision)


def test_metric_threshold_prefers_evaluation_and_fails_closed_on_missing():
    cfg = "policies: [{use: metric-threshold, with: {metric: accuracy, min: 0.8}}]"
    facts = StaticFacts(run_metrics={"accuracy": 0.5}, evaluation_metrics={"accuracy": 0.9})
    assert decide(cfg, make_event(alias="production", facts=facts)).allowed
    run_only = cfg.replace("min: 0.8", "min: 0.8, source: run")
    assert not decide(run_only, make_event(alias="production", facts=facts)).allowed
    missing = decide(cfg, make_event(alias="production", facts=StaticFacts()))
    assert not missing.allowed
    assert "metric 'accuracy' was not logged" in reasons(missing)
    nan = decide(
        cfg,
        make_event(alias="production", facts=StaticFacts(run_metrics={"accuracy": float("nan")})),
    )
    assert not nan.allowed
    assert "NaN" in reasons(nan)


def test_metric_threshold_lower_is_better_and_champion_without_metric():
    cfg = """
policies:
  - use: metric-threshold
    with: {metric: rmse, max: 10, higher_is_better: false, champion_relative_margin: 0.1}
"""
    holder = {"production": StaticFacts(run_metrics={"rmse": 5.0}, version="3")}
    better = StaticFacts(run_metrics={"rmse": 4.0}, holders=holder, version="4")
    accepted = decide(cfg, make_event(alias="production", facts=better))
    assert accepted.allowed
    assert "beats @production version 3 (5) by 1" in reasons(accepted)
    slight = StaticFacts(run_metrics={"rmse": 4.8}, holders=holder, version="4")
    assert not decide(cfg, make_event(alias="production", facts=slight)).allowed
    blind = StaticFacts(
        run_metrics={"rmse": 4.0}, holders={"production": StaticFacts(version="2")}, version="4"
    )
    refused = decide(cfg, make_event(alias="production", facts=blind))
    assert not refused.allowed
    assert "has no metric 'rmse'" in reasons(refused)


def test_allowed_requirements():
    cfg = """
policies:
  - use: allowed-requirements
    with: {allow: [scikit-learn, numpy, mlflow], deny: [pickle5], require_pinned: true}
"""
    facts = StaticFacts(
        requirements=[
            "scikit-learn==1.5.0",
            "numpy>=1.26",
            "requests==2.0",
            "--extra-index-url http://x",
            "Pickle5==0.1",
            "mlflow @ https://example.invalid/mlflow.whl",
            "not a requirement !!",
        ]
    )
    decision = decide(cfg, make_event(alias="production", facts=facts))
    text = reasons(decision)
    assert not decision.allowed
    assert "numpy>=1.26 is not pinned" in text
    assert "requests is not on the allow list" in text
    assert "pip option" in text
    assert "Pickle5 is on the deny list" in text
    assert "mlflow comes from a URL (https://example.invalid/mlflow.whl)" in text
    assert "'not a requirement !!' is not a requirement steward can check" in text
    again = decide(cfg, make_event(alias="production", facts=facts))  # parsed lines are cached
    assert reasons(again) == text
    ok = StaticFacts(requirements=["scikit-learn==1.5.0", "numpy==2.1.0", "mlflow==3.17.2"])
    assert decide(cfg, make_event(alias="production", facts=ok)).allowed


def test_freeze_window_dated_and_weekly():
    cfg = """
policies:
  - use: freeze-window
    with:
      timezone: Europe/Berlin
      windows:
        - {start: "2026-12-20T00:00", end: "2027-01-05T00:00"}
        - {days: [fri], from: "16:00", to: "23:59"}
"""
    christmas = datetime(2026, 12, 24, 12, 0, tzinfo=UTC)
    refused = decide(cfg, make_event(alias="production", time=christmas))
    assert not refused.allowed
    assert "window 1 (2026-12-20T00:00 to 2027-01-05T00:00)" in reasons(refused)
    friday_evening = datetime(2026, 11, 27, 16, 30, tzinfo=UTC)  # 17:30 in Berlin
    assert not decide(cfg, make_event(alias="production", time=friday_evening)).allowed
    friday_noon = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert decide(cfg, make_event(alias="production", time=friday_noon)).allowed
    tagged = decide(cfg, make_event("set_model_version_tag", time=christmas))
    assert [o.policy for o in tagged.outcomes if o.policy == "freeze-window"] == []


def _approval(approver, age=0.0, alias="production", **bound):
    """An approval bound to StaticFacts' model identity and content, unless ``bound`` says
    otherwise."""
    bound = {"model_created": 1, "digest": "sha256:static", **bound}
    return Approval("m", "4", alias, approver, "", time.time() - age, **bound)


def test_approvals_quorum_four_eyes_and_expiry():
    cfg = """
policies:
  - use: approvals
    when: {alias: production}
    with: {count: 2, expires_after: 1d}
"""
    facts = StaticFacts(
        author="alice",
        approval_list=[
            _approval("alice"),
            _approval("bob"),
            _approval("carol", age=3 * 86400),
            _approval("dave", alias="staging"),
        ],
    )
    refused = decide(cfg, make_event(alias="production", actor="erin", facts=facts))
    assert not refused.allowed
    text = reasons(refused)
    assert "1 of 2 required approvals for @production (bob)" in text
    assert "alice (the run's author)" in text
    assert "carol (expired)" in text
    facts.approval_list.append(_approval("frank"))
    assert decide(cfg, make_event(alias="production", actor="erin", facts=facts)).allowed
    # the requester's own approval does not count
    assert not decide(cfg, make_event(alias="production", actor="frank", facts=facts)).allowed


def test_author_cannot_approve():
    cfg = "policies: [{use: approvals, with: {count: 1}}]"
    facts = StaticFacts(author="alice")
    refused = decide(cfg, make_event("approve", alias="production", actor="alice", facts=facts))
    assert not refused.allowed
    assert "alice trained or registered this version" in reasons(refused)
    assert decide(cfg, make_event("approve", alias="production", actor="bob", facts=facts)).allowed


def test_registrant_counts_as_author_for_four_eyes():
    cfg = "policies: [{use: approvals, when: {alias: production}, with: {count: 1}}]"
    facts = StaticFacts(
        author="root",
        registrant="alice",
        approval_list=[_approval("alice"), _approval("bob", age=10)],
    )
    refused = decide(cfg, make_event("approve", alias="production", actor="alice", facts=facts))
    assert "alice trained or registered this version" in reasons(refused)
    promotion = decide(cfg, make_event(alias="production", actor="carol", facts=facts))
    assert promotion.allowed
    assert "alice (the run's author)" in reasons(promotion)
