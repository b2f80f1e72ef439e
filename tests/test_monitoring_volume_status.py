"""`when: recovered`: a monitor that turns healthy again after an unhealthy run alerts once (runs
with insufficient data looked past); rules on it may only alert. (`degraded`, realised
performance loss told apart from drift, is in tests/test_monitoring_performance.py.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mlflow_steward.cli.main import cli
from mlflow_steward.config import load_config
from mlflow_steward.errors import ConfigError
from mlflow_steward.monitoring.monitors import load_monitors
from mlflow_steward.plugins.manager import create_plugin_manager
from tests.monitoring_helpers import Webhook, batch, train


def _config(workspace, rules: str, alerters: str = "") -> None:
    workspace.write_config(
        "monitors:\n  fraud:\n    model: models:/fraud/1\n"
        f"    data: {workspace.root}/current/*.csv\n    min_samples: 200\n    alpha: 0.001\n    rules:\n"
        + "".join(f"      {line}\n" for line in rules.splitlines())
        + alerters
    )


def _run(workspace, rows: int, shift: float, seed: int) -> dict:
    folder = workspace.root / "current"
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.csv"):
        old.unlink()
    batch(np.random.default_rng(seed), n=rows, shift=shift).to_csv(folder / "b.csv", index=False)
    result = CliRunner().invoke(cli, ["monitor", "run", "--json", "--no-log"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index("{") :])["runs"][0]


def test_recovered_alerts_once_when_the_monitor_turns_healthy_again(workspace):
    train(workspace.db_uri)
    with Webhook() as hook:
        _config(
            workspace,
            "- {when: drift, do: [tag]}\n- {when: recovered, do: [{alert: ops}]}",
            f"alerters:\n  ops: {{use: webhook, url: '{hook.url}'}}\n",
        )
        first = _run(workspace, 600, 0.0, 1)
        assert first["actions"] == [], first  # healthy from the start
        drift = _run(workspace, 600, 0.9, 2)
        assert drift["status"] == "drift"
        assert [a["action"] for a in drift["actions"]] == ["tag"]
        few = _run(workspace, 50, 0.0, 3)
        assert few["status"] == "insufficient data"
        assert few["actions"] == []
        assert hook.received == []
        healthy = _run(workspace, 600, 0.0, 4)  # past the insufficient run: drift before it
        assert healthy["status"] == "healthy"
        assert [(a["action"], a["ok"]) for a in healthy["actions"]] == [("alert", True)]
        [(_, body)] = hook.received
        alert = json.loads(body)
        assert alert["status"] == "recovered"
        assert "RECOVERED on models:/fraud/1" in alert["summary"]
        # Healthy once more: nothing to tell.
        assert _run(workspace, 600, 0.0, 5)["actions"] == []
        assert len(hook.received) == 1


def test_rules_on_recovered_may_only_alert_and_statuses_are_checked(workspace):
    pm = create_plugin_manager()
    _config(workspace, "- {when: recovered, do: [rollback]}")
    with pytest.raises(ConfigError, match="a rule on recovered may only alert"):
        load_monitors(load_config(workspace.config_path), pm)
    _config(workspace, "- {when: degradd, do: [tag]}")
    with pytest.raises(ConfigError, match="did you mean 'degraded'"):
        load_monitors(load_config(workspace.config_path), pm)
    _config(workspace, "- {when: [drift, degraded], after: 2, do: [tag]}")
    [monitor] = load_monitors(load_config(workspace.config_path), pm).values()
    assert monitor.rules[0].when == ("drift", "degraded")
