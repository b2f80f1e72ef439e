"""The feedback loop end to end: a model trained with log_baseline, deployed on-prem (a real gateway
and scoring server), gets unshifted then shifted traffic; `steward monitor run` on the
deployment's request log is healthy, then drift naming the column; the rule rolls @production back
through governance (audited as steward-monitor) and the deployment that follows the alias serves
the newest earlier version whose verdict was not drift: of v1, v2 (found drifting by a check) and
v3, that is v1."""

from __future__ import annotations

import contextlib
import json
import time

import numpy as np
import pytest
import requests
from click.testing import CliRunner

from mlflow_steward.cli.main import cli
from mlflow_steward.deployment.host import DeploymentHost
from mlflow_steward.deployment.onprem.ports import free_port
from mlflow_steward.errors import MonitoringError
from mlflow_steward.lifecycle.session import StewardSession
from mlflow_steward.monitoring.data import read_request_logs, request_log_dir
from mlflow_steward.records import db
from mlflow_steward.records.audit import AuditLog
from tests.monitoring_helpers import COLUMNS, Webhook, batch, train

pytestmark = pytest.mark.slow


def send(endpoint: str, frame, rows_per_request: int = 50) -> None:
    for start in range(0, len(frame), rows_per_request):
        part = frame.iloc[start : start + rows_per_request]
        body = {"dataframe_split": {"columns": COLUMNS, "data": part.to_numpy().tolist()}}
        response = requests.post(f"{endpoint}/invocations", json=body, timeout=30)
        assert response.status_code == 200, response.text


def wait_logged(session, deployment: str, version: str, rows: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(MonitoringError):
            if len(read_request_logs(request_log_dir(session, deployment), version)) >= rows:
                return
        time.sleep(0.3)
    raise AssertionError(f"the gateway did not log {rows} rows within 30s")


def test_drift_on_deployed_traffic_rolls_the_alias_and_the_deployment_back(
    workspace, tmp_path, monkeypatch
):
    monkeypatch.setenv("MLFLOW_STEWARD_HOME", str(tmp_path / "home"))
    workspace.write_config("")
    v1, v2, v3 = (train(workspace.db_uri, seed=seed) for seed in range(3))
    client = workspace.client()
    for version in (v1, v2, v3):
        client.set_registered_model_alias("fraud", "production", version)
    # v2 was found drifting by an ad-hoc check: the rollback must skip it and go back to v1.
    batch(np.random.default_rng(9), n=400, shift=1.0).to_csv(tmp_path / "odd.csv", index=False)
    checked = CliRunner().invoke(
        cli, ["monitor", "check", f"models:/fraud/{v2}", "--data", str(tmp_path / "odd.csv")]
    )
    assert checked.exit_code == 1, checked.output  # drift
    port = free_port()
    with Webhook() as hook:
        workspace.write_config(
            "\n".join(
                [
                    "monitors:",
                    "  fraud-production:",
                    "    model: models:/fraud@production",
                    "    data: {requests: fraud-prod}",
                    "    window: since-last-run",
                    "    min_samples: 200",
                    "    drift_share: 0.25",
                    "    rules:",
                    "      - when: drift",
                    "        do: [rollback, alert]",
                    "alerters:",
                    f"  ops: {{use: webhook, url: '{hook.url}'}}",
                    "",
                ]
            )
        )
        session = StewardSession()
        host = DeploymentHost(session)
        try:
            host.create(
                "fraud-prod",
                "models:/fraud@production",
                target="steward-onprem",
                config={"port": port, "drain": "0.5s", "watch": "0s"},
            )
            endpoint = f"http://127.0.0.1:{port}"
            rng = np.random.default_rng(3)
            send(endpoint, batch(rng, n=400))
            wait_logged(session, "fraud-prod", v3, 400)
            result = CliRunner().invoke(cli, ["monitor", "run", "--json"])
            assert result.exit_code == 0, result.output
            [healthy] = json.loads(result.output[result.output.index("{") :])["runs"]
            assert (healthy["status"], healthy["version"], healthy["rows"]) == ("healthy", v3, 400)
            assert healthy["actions"] == []
            judged = {c["column"] for c in healthy["columns"] if c["method"] != "none"}
            assert judged == {*COLUMNS, "__prediction__"}

            send(endpoint, batch(rng, n=1200, shift=1.0))
            wait_logged(session, "fraud-prod", v3, 1600)
            result = CliRunner().invoke(cli, ["monitor", "run"])
            assert result.exit_code == 0, result.output
            assert "fraud-production: models:/fraud/3 DRIFT (1200 rows" in result.output
            assert "drifted columns: age (share" in result.output, result.output
            assert (
                "rollback: moved @production from v3 back to v1; deployment fraud-prod now "
                "serves v1" in result.output
            )
            assert "alert: alerted ops ok" in result.output

            assert (
                workspace.plain_client().get_model_version_by_alias("fraud", "production").version
                == 1
            )
            served = requests.post(
                f"{endpoint}/invocations",
                json={"dataframe_split": {"columns": COLUMNS, "data": [[0.5, 0.1, 0.2]]}},
                timeout=30,
            )
            assert served.headers["X-Steward-Model-Version"] == "1"
            assert host.get("fraud-prod").version == "1"
            [alert] = hook.bodies()
            assert (alert["status"], alert["version"], alert["drifted"]) == ("drift", v3, ["age"])
        finally:
            with contextlib.suppress(Exception):
                host.delete("fraud-prod")
    monitor_entries = [
        (e.action, e.version, e.alias, e.outcome)
        for e in AuditLog(db.get_engine(workspace.db_uri)).entries()
        if e.actor == "steward-monitor" and e.action in ("set_alias", "deploy")
    ]
    assert ("set_alias", "1", "production", "applied") in monitor_entries
    assert ("deploy", "1", None, "applied") in monitor_entries
    rollback = next(
        e
        for e in AuditLog(db.get_engine(workspace.db_uri)).entries()
        if e.actor == "steward-monitor" and e.action == "set_alias"
    )
    assert rollback.details["rollback"] is True
