"""Pure logic of the deployment pieces: the request log, error classification, unit files, the
on-prem client against an unreachable gateway, and deployment state shared through PostgreSQL."""

from __future__ import annotations

import json
import time

import pytest

from mlflow_steward.deployment.onprem.client import OnPremClient
from mlflow_steward.deployment.onprem.plugin import OPTIONS
from mlflow_steward.deployment.onprem.ports import free_port
from mlflow_steward.deployment.onprem.reqlog import COLUMNS, RequestLog, read_request_log
from mlflow_steward.deployment.onprem.slots import is_model_error
from mlflow_steward.deployment.onprem.systemd import render_unit
from mlflow_steward.errors import DeploymentError
from mlflow_steward.plugins.targets import DeploymentContext, DeploymentInfo
from mlflow_steward.plugins.types import DeploymentTarget
from mlflow_steward.records import db
from mlflow_steward.records.deployments import DeploymentStore


def _add(log: RequestLog, i: int) -> None:
    log.add(
        request_id=f"r{i}",
        version="3",
        status=200,
        latency_ms=1.5,
        content_type="application/json",
        request=f'{{"x": {i}}}'.encode(),
        response=b'{"predictions": [1]}',
    )


def test_jsonl_request_log_rotates_by_rows_and_keeps_every_record(tmp_path):
    log = RequestLog(tmp_path, deployment="fraud", rotate_rows=4, flush_seconds=0.05)
    for i in range(10):
        _add(log, i)
    log.close()
    files = sorted(tmp_path.glob("requests-*.jsonl"))
    assert len(files) == 3  # 4 + 4 + 2
    records = read_request_log(tmp_path)
    assert [r["request_id"] for r in records] == [f"r{i}" for i in range(10)]
    assert set(records[0]) == set(COLUMNS)
    assert records[3]["request"] == '{"x": 3}'
    assert records[0]["deployment"] == "fraud"


def test_parquet_request_log_writes_whole_segments(tmp_path):
    log = RequestLog(tmp_path, deployment="fraud", fmt="parquet", rotate_rows=5, flush_seconds=0.05)
    for i in range(7):
        _add(log, i)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not list(tmp_path.glob("requests-*.parquet")):
        time.sleep(0.05)
    time.sleep(0.2)
    # A full segment is on disk while the service runs; the rest at shutdown.
    assert len(list(tmp_path.glob("requests-*.parquet"))) == 1
    log.close()
    assert len(list(tmp_path.glob("requests-*.parquet"))) == 2
    assert not list(tmp_path.glob("*.tmp"))
    records = read_request_log(tmp_path)
    assert [r["status"] for r in records] == [200] * 7
    assert records[6]["response"] == '{"predictions": [1]}'


def test_payload_sampling_keeps_metadata_of_every_request(tmp_path):
    log = RequestLog(tmp_path, deployment="fraud", payload_sample=0.0, flush_seconds=0.05)
    for i in range(5):
        _add(log, i)
    log.close()
    records = read_request_log(tmp_path)
    assert len(records) == 5
    assert all(r["request"] is None and r["response"] is None for r in records)
    with pytest.raises(ValueError, match=r"payload_sample 1\.5"):
        RequestLog(tmp_path, deployment="x", payload_sample=1.5)
    with pytest.raises(ValueError, match="format 'csv'"):
        RequestLog(tmp_path, deployment="x", fmt="csv")


def test_model_errors_are_told_from_bad_input():
    raised = json.dumps(
        {
            "error_code": "BAD_REQUEST",
            "message": "Encountered an unexpected "
            "error while evaluating the model. Verify that ...",
        }
    ).encode()
    schema = json.dumps(
        {"error_code": "INVALID_PARAMETER_VALUE", "message": "Model is missing inputs ['b']"}
    ).encode()
    assert is_model_error(400, raised)
    assert not is_model_error(400, schema)
    assert is_model_error(503, b"")
    assert not is_model_error(200, b"unexpected error while evaluating the model")


def test_systemd_unit_runs_the_gateway_and_restarts_it():
    unit = render_unit(
        "fraud",
        ["/venv/bin/python", "-m", "gw", "fraud", "--registry-uri", "sqlite:////srv/mlflow.db"],
        workdir="/srv",
        user="mlops",
    )
    assert "ExecStart=/venv/bin/python -m gw fraud --registry-uri sqlite:////srv/mlflow.db" in unit
    assert "User=mlops" in unit
    assert "Restart=on-failure" in unit
    assert "EnvironmentFile=-/etc/mlflow-steward/fraud.env" in unit


def _onprem(tmp_path, store=None):
    target = DeploymentTarget(
        name="steward-onprem", kind="onprem", client=OnPremClient, help="", options=OPTIONS
    )
    context = DeploymentContext(
        store=store, registry_uri="sqlite:///x.db", tracking_uri="sqlite:///x.db", actor="tester"
    )
    return OnPremClient(target, context)


def _info(port: int) -> DeploymentInfo:
    return DeploymentInfo(
        name="fraud",
        target="steward-onprem",
        kind="onprem",
        model="fraud",
        version="1",
        status="serving",
        options={"host": "127.0.0.1", "port": port, "request_timeout": 5.0},
        runtime={"admin_port": free_port(), "admin_token": "t"},
    )


def test_an_unreachable_gateway_gives_errors_a_user_can_act_on(tmp_path):
    import pandas as pd

    client = _onprem(tmp_path)
    info = _info(free_port())
    with pytest.raises(
        DeploymentError,
        match=r"deployment 'fraud' at http://127\.0\.0\.1:\d+ "
        r"did not answer.*steward deploy status fraud",
    ):
        client.predict(info, pd.DataFrame({"x0": [1.0]}))
    health = client.health(info)
    assert health["healthy"] is False
    assert "does not answer" in health["detail"]
    with pytest.raises(
        DeploymentError,
        match=r"gateway of deployment 'fraud' is not running; "
        r"start it .* `steward deploy start fraud`",
    ):
        client.promote_canary(info)
    assert client.status(info)["gateway"] == "down"


@pytest.mark.postgres
def test_deployment_state_is_shared_through_postgresql(postgres_uri):
    """Two hosts (two engines, as two processes would have) see one state and one audit chain."""
    import sqlalchemy as sa

    first = DeploymentStore(db.get_engine(postgres_uri))
    second = DeploymentStore(sa.create_engine(postgres_uri))
    info = DeploymentInfo(
        name="fraud",
        target="steward-onprem",
        kind="onprem",
        model="fraud",
        version="1",
        status="starting",
        options={"port": 8080},
        traffic={"1": 100},
    )
    with first.engine.begin() as conn:
        first.insert_row(conn, info)
    first.record(
        info,
        kind="create",
        actor="alice",
        status="serving",
        decision="allowed",
        row={"status": "serving", "endpoint": "http://h:8080"},
    )
    seen = second.require("fraud")
    assert (seen.status, seen.endpoint, seen.options) == (
        "serving",
        "http://h:8080",
        {"port": 8080},
    )
    second.record(
        seen,
        kind="update",
        actor="bob",
        status="serving",
        version="2",
        from_version="1",
        decision="allowed",
        row={"version": "2"},
    )
    assert first.require("fraud").version == "2"
    assert [(s.kind, s.actor) for s in first.history("fraud")] == [
        ("create", "alice"),
        ("update", "bob"),
    ]
    assert first.previous_version("fraud", "2") == "1"
    with pytest.raises(DeploymentError, match="already exists"), first.engine.begin() as conn:
        first.insert_row(conn, info)
    assert first.audit.verify().ok
    assert first.audit.verify().entries == 2
    second.engine.dispose()


def test_rollback_never_targets_a_version_the_gateway_took_out(tmp_path):
    store = DeploymentStore(db.get_engine(f"sqlite:///{tmp_path / 'r.db'}"))
    info = DeploymentInfo(
        name="fraud",
        target="steward-onprem",
        kind="onprem",
        model="fraud",
        version="1",
        status="serving",
    )
    with store.engine.begin() as conn:
        store.insert_row(conn, info)
    for kind, version, previous in (
        ("create", "1", None),
        ("update", "2", "1"),
        ("update", "5", "2"),
        ("auto-rollback", "2", "5"),
    ):
        store.record(
            info, kind=kind, actor="t", status="serving", version=version, from_version=previous
        )
    assert store.previous_version("fraud", "2") == "1"  # not 5, which failed in production
