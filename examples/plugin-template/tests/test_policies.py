"""Unit tests with the fixtures mlflow-steward ships for plugin authors (no MLflow needed)."""

from __future__ import annotations

import steward_team_kit

from mlflow_steward.plugins.testing import StaticFacts


def _policy(steward_plugin_manager):
    pm = steward_plugin_manager(plugins=[steward_team_kit])
    return pm.hooks.policies()["owner-in-domain"].policy


def test_owner_in_domain_is_allowed(steward_plugin_manager, steward_event):
    event = steward_event(facts=StaticFacts(version_tags={"owner": "Alice@Example.com"}))
    verdict = _policy(steward_plugin_manager).check(
        event, {"domain": "example.com", "tag": "owner", "directory": ""}
    )
    assert verdict.allowed, verdict.reason


def test_foreign_or_missing_owner_is_refused(steward_plugin_manager, steward_event):
    policy = _policy(steward_plugin_manager)
    options = {"domain": "example.com", "tag": "owner", "directory": ""}
    foreign = policy.check(
        steward_event(facts=StaticFacts(version_tags={"owner": "bob@gmail.com"})), options
    )
    assert not foreign.allowed
    assert "not an address at example.com" in foreign.reason
    missing = policy.check(steward_event(facts=StaticFacts()), options)
    assert not missing.allowed
    assert "no 'owner' tag" in missing.reason
