"""Realised performance: served predictions from a request log joined with labels that arrived
later (request id and row), against the baseline's own accuracy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mlflow_steward.cli.main import cli
from mlflow_steward.deployment.onprem.reqlog import RequestLog
from mlflow_steward.errors import MonitoringError
from mlflow_steward.monitoring.performance import join_labels, realised, score
from tests.monitoring_helpers import COLUMNS, batch, log_served, train


def serve(workspace, requests: int = 60, rows: int = 5) -> pd.DataFrame:
    """A request log of ``requests`` requests of ``rows`` rows answered by v1 (predictions
    computed like the model: amount > 0); returns the true labels with request_id and row."""
    rng = np.random.default_rng(4)
    log = RequestLog(workspace.root / "requests", deployment="fraud", rotate_rows=100)
    truth = []
    for i in range(requests):
        part = batch(rng, n=rows)
        predictions = (part["amount"] > 0).astype(int).tolist()
        log_served(log, f"r{i}", part, predictions)
        truth += [{"request_id": f"r{i}", "row": j, "label": p} for j, p in enumerate(predictions)]
    log.close()
    return pd.DataFrame(truth)


def monitor(workspace, labels: pd.DataFrame) -> dict:
    labels.to_csv(workspace.root / "labels.csv", index=False)
    workspace.write_config(
        "monitors:\n  fraud:\n    model: models:/fraud/1\n"
        f"    data: {workspace.root / 'requests'}\n    labels: {workspace.root / 'labels.csv'}\n"
        "    max_performance_drop: 0.05\n    rules:\n      - when: degraded\n        do: [tag]\n"
    )
    result = CliRunner().invoke(cli, ["monitor", "run", "--json", "--no-log"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index("{") :])["runs"][0]


def test_labels_joined_on_request_and_row_judge_the_served_predictions(workspace):
    train(workspace.db_uri)  # baseline labels = amount > 0, predicted almost perfectly
    truth = serve(workspace)
    good = monitor(workspace, truth)
    assert good["status"] == "healthy"
    assert good["performance"]["labelled"] == 300
    assert good["performance"]["realised"] == 1.0
    assert good["performance"]["degraded"] is False

    wrong = truth.copy()
    flip = wrong.index % 4 == 0  # a quarter of the labels disagree: accuracy 0.75
    wrong.loc[flip, "label"] = 1 - wrong.loc[flip, "label"]
    bad = monitor(workspace, wrong)
    assert bad["status"] == "degraded"  # not drift: the inputs did not move, the performance did
    assert bad["drifted"] == []
    assert bad["performance"]["realised"] == 0.75
    assert any(
        "realised accuracy 0.75 on 300 labelled rows" in q and "worse by" in q
        for q in bad["quality"]
    ), bad["quality"]
    assert [a["action"] for a in bad["actions"]] == ["tag"]


def test_empty_labels_float_labels_and_corrections(workspace):
    train(workspace.db_uri)
    truth = serve(workspace)
    messy = truth.assign(label=truth["label"].astype(float))  # 1.0 from a CSV, 1 served
    messy.loc[0, "label"] = np.nan
    corrected = messy.iloc[[1]].assign(label=1 - messy.loc[1, "label"])
    wrong_first = messy.copy()
    wrong_first.loc[1, "label"] = 1 - wrong_first.loc[1, "label"]  # wrong, then corrected
    run = monitor(
        workspace, pd.concat([wrong_first, corrected.assign(label=messy.loc[1, "label"])])
    )
    assert run["status"] == "healthy", run["quality"]
    assert run["performance"]["realised"] == 1.0
    assert run["performance"]["labelled"] == 299
    assert any("1 empty labels left out" in q for q in run["quality"])


def test_too_few_labels_is_a_finding_not_a_verdict(workspace):
    train(workspace.db_uri)
    truth = serve(workspace)
    few = monitor(workspace, truth.head(40))
    assert few["status"] == "healthy"
    assert few["performance"] is None
    assert any("40 labelled rows, fewer than the minimum of 100" in q for q in few["quality"])


def test_join_and_score_units():
    current = pd.DataFrame(
        {"x": [1, 2, 3], "__request_id__": ["a", "a", "b"], "__prediction__": [1, 0, 1]}
    )
    labels = pd.DataFrame({"request_id": ["a", "a", "b"], "row": [1, 0, 0], "label": [0, 1, 1]})
    joined = join_labels(current, labels)
    assert sorted(zip(joined["__prediction__"], joined["__label__"], strict=True)) == [
        (0, 0),
        (1, 1),
        (1, 1),
    ]
    # Without `row`, only single-row requests can be matched.
    assert len(join_labels(current, labels.drop(columns="row").tail(1))) == 1
    assert score("rmse", [1.0, 3.0], [2.0, 3.0]) == pytest.approx(0.5**0.5)
    with pytest.raises(MonitoringError, match="lack column"):
        join_labels(current, labels.rename(columns={"label": "y"}))
    with pytest.raises(MonitoringError, match="request log"):
        join_labels(current.drop(columns="__request_id__"), labels)
    baseline = pd.DataFrame({c: [0.0] for c in COLUMNS})
    assert "no labels and predictions" in realised(
        current, labels, baseline, metric="accuracy", max_drop=0.1, min_samples=1
    )
