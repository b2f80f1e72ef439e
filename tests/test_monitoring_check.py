"""`steward monitor check`: a version's baseline against current data, logged to MLflow, the
version tagged through governance, on a real embedded registry."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.exceptions import MlflowException

from mlflow_steward.cli.main import cli
from mlflow_steward.deployment.onprem.reqlog import RequestLog
from mlflow_steward.errors import MonitoringError
from tests import model_requirements
from tests.monitoring_helpers import log_served


def _train(workspace, *, baseline: bool = True, log_input: bool = False):
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    import mlflow_steward as steward

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(3000, 3)), columns=["amount", "age", "score"])
    y = (X["amount"] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    mlflow.set_tracking_uri(workspace.db_uri)
    mlflow.set_registry_uri(workspace.db_uri)
    with mlflow.start_run():
        mlflow.log_metric("accuracy", 0.97)
        if log_input:
            path = workspace.root / "train.csv"
            X.to_csv(path, index=False)
            mlflow.log_input(mlflow.data.from_pandas(X, source=str(path)), context="training")
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(X, model.predict(X)),
            pip_requirements=model_requirements.sklearn(),
        )
        if baseline:
            steward.log_baseline(X, y, model.predict(X), model_info=info)
    version = mlflow.register_model(info.model_uri, "fraud").version
    return X, model, version


def _current(rng, n=800, shift=0.0) -> pd.DataFrame:
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["amount", "age", "score"])
    X["age"] += shift
    return X


def _check(workspace, uri, data, *extra):
    result = CliRunner().invoke(
        cli, ["monitor", "check", uri, "--data", str(data), "--json", *extra]
    )
    return result.exit_code, (
        json.loads(result.output) if result.output.startswith("{") else result.output
    )


def test_healthy_then_drift_logged_to_mlflow_and_tagged_through_governance(workspace):
    _, _, version = _train(workspace)
    rng = np.random.default_rng(1)
    _current(rng).to_csv(workspace.root / "ok.csv", index=False)
    code, healthy = _check(workspace, "models:/fraud/1", workspace.root / "ok.csv")
    assert code == 0, healthy
    assert healthy["status"] == "healthy"
    assert healthy["baseline"].endswith("steward-baseline")

    _current(rng, shift=0.8).to_parquet(workspace.root / "shifted.parquet")
    code, drift = _check(workspace, "models:/fraud/1", workspace.root / "shifted.parquet")
    assert code == 1
    assert drift["status"] == "drift"
    assert drift["drifted"] == ["age"]
    age = next(c for c in drift["columns"] if c["column"] == "age")
    assert age["method"] == "ks (exact)"
    assert age["n_reference"] == 3000
    assert age["n_current"] == 800

    client = workspace.plain_client()
    run = client.get_run(drift["run_id"])
    assert run.data.tags["steward.monitor.status"] == "drift"
    assert run.data.metrics["age.drifted"] == 1.0
    assert run.data.metrics["amount.drifted"] == 0.0
    assert run.data.params["correction"] == "benjamini-hochberg"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "steward-monitor")}
    assert {"steward-monitor/report.html", "steward-monitor/verdict.json"} <= artifacts
    assert sum(p.endswith(".png") for p in artifacts) == 3
    tags = client.get_model_version("fraud", version).tags
    assert tags["steward.monitor.status"] == "drift"
    assert tags["steward.monitor.last_run"].endswith(drift["run_id"])
    from mlflow_steward.records import db
    from mlflow_steward.records.audit import AuditLog

    entries = [
        e
        for e in AuditLog(db.get_engine(workspace.db_uri)).entries(model="fraud")
        if e.actor == "steward-monitor"
    ]
    assert [(e.action, e.details["tag_key"]) for e in entries][-2:] == [
        ("set_model_version_tag", "steward.monitor.status"),
        ("set_model_version_tag", "steward.monitor.last_run"),
    ]
    # Clients still cannot write steward.* tags themselves.
    with pytest.raises(MlflowException, match="reserved-tags"):
        workspace.client().set_model_version_tag("fraud", version, "steward.monitor.status", "ok")


def test_bad_batches_give_findings_and_exit_2_without_drift(workspace):
    _train(workspace)
    rng = np.random.default_rng(2)
    _current(rng, n=30).to_csv(workspace.root / "few.csv", index=False)
    code, few = _check(workspace, "models:/fraud/1", workspace.root / "few.csv", "--no-log")
    assert code == 2
    assert few["status"] == "insufficient data"
    assert few["run_id"] is None
    _current(rng).drop(columns=["score"]).to_csv(workspace.root / "missing.csv", index=False)
    code, missing = _check(workspace, "models:/fraud/1", workspace.root / "missing.csv", "--no-log")
    assert code == 2
    assert missing["status"] == "invalid"
    assert "missing columns score" in missing["quality"][0]
    code, output = _check(workspace, "models:/fraud/1", workspace.root / "nope.csv")
    assert code == 1
    assert "no data file at" in output


def test_without_a_baseline_the_error_says_how_to_log_one(workspace):
    _train(workspace, baseline=False)
    (workspace.root / "x.csv").write_text("amount,age,score\n1,2,3\n")
    code, output = _check(workspace, "models:/fraud/1", workspace.root / "x.csv")
    assert code == 1
    assert "has no baseline to compare with: log one from the training code with" in output
    assert "mlflow_steward.log_baseline(" in output


def test_falls_back_to_the_training_dataset_logged_with_log_input(workspace):
    _train(workspace, baseline=False, log_input=True)
    rng = np.random.default_rng(3)
    _current(rng).to_csv(workspace.root / "ok.csv", index=False)
    code, result = _check(workspace, "models:/fraud/1", workspace.root / "ok.csv", "--no-log")
    assert code == 0
    assert result["baseline"].endswith("train.csv")


def test_reads_an_onprem_request_log(workspace, tmp_path):
    _X, model, _ = _train(workspace)
    rng = np.random.default_rng(4)
    log = RequestLog(tmp_path / "requests", deployment="fraud", rotate_rows=50)
    for i in range(40):
        batch = _current(rng, n=25, shift=1.0)
        log_served(log, f"r{i}", batch, model.predict(batch).tolist())
    log.add(
        request_id="bad",
        version="1",
        status=400,
        latency_ms=1.0,
        content_type=None,
        request=b"{}",
        response=b"{}",
    )
    log.close()
    code, result = _check(
        workspace, "models:/fraud/1", tmp_path / "requests", "--no-log", "--drift-share", "0.25"
    )
    assert result["drifted"] == ["age"]
    assert code == 1  # one of four columns (the three features and the prediction)
    n_current = {c["column"]: c["n_current"] for c in result["columns"]}
    assert n_current["age"] == 1000
    assert "__prediction__" in n_current


def test_check_errors_are_monitoring_errors(workspace):
    from mlflow_steward.monitoring.data import read_current

    (workspace.root / "a.txt").write_text("x")
    with pytest.raises(MonitoringError, match=r"unknown file type '\.txt'"):
        read_current(str(workspace.root / "a.txt"))
    with pytest.raises(MonitoringError, match="folder without request-log files"):
        read_current(str(workspace.root))
