"""`steward quickstart` as a new user runs it: the installed console script, in a real process."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

STEWARD = str(Path(sys.executable).with_name("steward"))
USER, MONITOR, GATEWAY = "quickstart-user", "steward-monitor", "steward-gateway"
EVIDENCE = "steward-evidence"

#: Every audit entry the quickstart makes up to `steward audit verify` (actor, action, version,
#: decision), by the step of the README's "What the quickstart shows" that makes it: this list
#: is where the "43 entries" the quickstart prints come from.
QUICKSTART_LOG = [
    # 1. the unsigned model: its model is created, the version refused, the empty model removed
    (USER, "create_registered_model", None, "allowed"),
    (USER, "create_model_version", None, "refused"),
    (USER, "delete_registered_model", None, "allowed"),
    # the signed models: the model again, v1 (logistic regression), v2 (coin flip)
    (USER, "create_registered_model", None, "allowed"),
    (USER, "create_model_version", "1", "allowed"),
    (USER, "create_model_version", "2", "allowed"),
    # 2. v1 to @production without an owner tag: required-tags refuses
    (USER, "set_alias", "1", "refused"),
    # 3. v2 tagged owner, then to @production: metric-threshold refuses
    (USER, "set_model_version_tag", "2", "allowed"),
    (USER, "set_alias", "2", "refused"),
    # 4. v1 tagged owner, then promoted
    (USER, "set_model_version_tag", "1", "allowed"),
    (USER, "set_alias", "1", "allowed"),
    (EVIDENCE, "record_evidence", "1", "allowed"),  # what the promotion rested on
    # 5. deployed on-prem: the decision, then the step
    (USER, "deploy", "1", "allowed"),
    (USER, "deployment_create", "1", "allowed"),
    (EVIDENCE, "record_evidence", "1", "allowed"),  # what the deploy rested on
    # 6. v3 registered, tagged, promoted, then the blue/green update
    (USER, "create_model_version", "3", "allowed"),
    (USER, "set_model_version_tag", "3", "allowed"),
    (USER, "set_alias", "3", "allowed"),
    (EVIDENCE, "record_evidence", "3", "allowed"),  # what the promotion rested on
    (USER, "deploy", "3", "allowed"),
    (USER, "deployment_update", "3", "allowed"),
    (EVIDENCE, "record_evidence", "3", "allowed"),  # what the deploy rested on
    # 7. the bad release v4 deployed by version (not promoted), and the gateway's rollback
    (USER, "create_model_version", "4", "allowed"),
    (USER, "deploy", "4", "allowed"),
    (USER, "deployment_update", "4", "allowed"),
    (EVIDENCE, "record_evidence", "4", "allowed"),  # what the deploy rested on
    (GATEWAY, "deployment_auto_rollback", "3", "automatic"),
    # 8. v5 with a baseline: registered, tagged, promoted; the deployment follows the alias
    (USER, "create_model_version", "5", "allowed"),
    (USER, "set_model_version_tag", "5", "allowed"),
    (USER, "set_alias", "5", "allowed"),
    (EVIDENCE, "record_evidence", "5", "allowed"),  # what the promotion rested on
    (USER, "deploy", "5", "allowed"),
    (USER, "deployment_update", "5", "allowed"),
    (EVIDENCE, "record_evidence", "5", "allowed"),  # what the deploy rested on
    # two monitor runs (healthy, drift), each tagging v5's status and last run
    (MONITOR, "set_model_version_tag", "5", "allowed"),
    (MONITOR, "set_model_version_tag", "5", "allowed"),
    (MONITOR, "set_model_version_tag", "5", "allowed"),
    (MONITOR, "set_model_version_tag", "5", "allowed"),
    # the drift rule rolls @production back to v3, and the deployment with it
    (MONITOR, "set_alias", "3", "allowed"),
    (EVIDENCE, "record_evidence", "3", "allowed"),  # what the promotion rested on
    (MONITOR, "deploy", "3", "allowed"),
    (MONITOR, "deployment_update", "3", "allowed"),
    (EVIDENCE, "record_evidence", "3", "allowed"),  # what the deploy rested on
]


def _steward(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        [STEWARD, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


@pytest.mark.slow
def test_quickstart_end_to_end_then_by_hand(tmp_path):
    proc = _steward("quickstart", "--dir", "qs", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "[require-signature] the model has no signature" in out
    assert "registered models named 'breast-cancer' left behind: 0" in out
    assert "[required-tags] missing tag owner on the version" in out
    assert "[metric-threshold] accuracy=0.629371 is below the minimum 0.8" in out
    assert "ALLOWED: models:/breast-cancer@production -> version 1" in out
    # Deployment: @production served on-prem, predictions through the gateway, a blue/green
    # update under load without a failed request, and a bad release rolled back automatically.
    assert "SERVING: version 1 at http://127.0.0.1:" in out
    assert "HTTP 200 from v1: predictions [0, 1, 1, 1, 1]" in out
    assert "true labels:               [0, 1, 1, 1, 1]" in out
    assert re.search(
        r"SWITCHED to version 3: \d+ requests during the update, 0 failed; "
        r"answered by v1 then v3\n",  # each client: v1, then v3 only, never back
        out,
    ), out[-4000:]
    assert re.search(
        r"ROLLED BACK automatically to version 3: automatic rollback: error rate of "
        r"v4 was \d+\.\d% over the last \d+ requests",
        out,
    ), out[-4000:]
    assert re.search(r"auto-rollback +v4 -> v3 +by steward-gateway", out)
    # Monitoring: healthy on normal traffic, drift on the shifted traffic, rolled back by the rule.
    assert "verdict: HEALTHY on 143 logged rows of v5" in out
    assert "verdict: DRIFT on 143 logged rows of v5" in out
    assert (
        "rule -> rollback: moved @production from v5 back to v3; deployment breast-cancer "
        "now serves v3" in out
    )
    assert re.search(r"#\d+ +steward-monitor +set_alias +breast-cancer/3@production +allowed", out)
    # The count `verify` prints is the quickstart's decisions and steps, listed in QUICKSTART_LOG.
    assert f"audit log OK: {len(QUICKSTART_LOG)} entries, hash chain intact" in out
    assert "deployment 'breast-cancer' stopped" in out

    root = tmp_path / "qs"
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "MLFLOW_STEWARD_CONFIG": str(root / "steward.yaml"),
    }
    check = _steward("check", "models:/breast-cancer/2", "--to", "production", "--json", env=env)
    assert check.returncode == 1, check.stderr
    verdicts = {p["policy"]: p["allowed"] for p in json.loads(check.stdout)["policies"]}
    assert verdicts == {
        "require-signature": True,
        "required-tags": True,
        "metric-threshold": False,
        "content-digest": True,  # on by default: the artifacts are as registered
    }

    history = _steward("history", "breast-cancer", env=env)
    assert "@production" in history.stdout
    assert "- -> 1" in history.stdout

    deployed = _steward("deploy", "history", "breast-cancer", env=env)
    assert [line.split()[1] for line in deployed.stdout.splitlines()] == [
        "create",
        "update",
        "update",
        "auto-rollback",
        "update",
        "update",
        "delete",
    ]
    monitor_runs = _steward("monitor", "run", "--no-log", "--json", env=env)
    assert monitor_runs.returncode == 1, monitor_runs.stdout
    [run] = json.loads(monitor_runs.stdout)["runs"]
    assert run["status"] == "error"
    # @production is v3 again, logged without a baseline; the runner loads the baseline before
    # the data (a source is told the model's columns), so that is what it names first (the
    # deployment is gone too).
    assert "models:/breast-cancer/3 has no baseline to compare with" in run["error"], run
    assert run["actions"] == []
    requests = list((root / "home" / "deployments" / "breast-cancer" / "requests").glob("*.jsonl"))
    assert requests, "the gateway logged no requests"

    assert _steward("audit", "verify", env=env).returncode == 0
    with sqlite3.connect(root / "mlflow.db") as conn:
        logged = conn.execute(
            "SELECT actor, action, version, decision FROM steward_audit ORDER BY seq"
        ).fetchall()
    # The quickstart's own entries, then the deletion that stops its deployment. The person is
    # whoever runs it (`quickstart-user`, or MLFLOW_STEWARD_ACTOR as in these tests).
    person = logged[0][0]
    expected = [(person if actor == USER else actor, *rest) for actor, *rest in QUICKSTART_LOG]
    assert logged[: len(QUICKSTART_LOG)] == expected
    assert logged[len(QUICKSTART_LOG) :] == [(person, "deployment_delete", "3", "allowed")]
    with sqlite3.connect(root / "mlflow.db") as conn:
        conn.execute("UPDATE steward_audit SET actor = 'mallory' WHERE seq = 7")
    broken = _steward("audit", "verify", env=env)
    assert broken.returncode == 1
    assert "BROKEN at entry 7" in broken.stderr
