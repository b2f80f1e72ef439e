"""The retrain action: a version produced by an MLflow project in a git repository is retrained
from its recorded commit, entry point and parameters, as a governed `retrain` action."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pytest
from click.testing import CliRunner

from mlflow_steward.cli.main import cli
from mlflow_steward.records import db
from mlflow_steward.records.audit import AuditLog
from tests.monitoring_helpers import batch

pytestmark = pytest.mark.slow

TRAIN = """\
import argparse

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

import mlflow_steward as steward

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int)
args = parser.parse_args()
rng = np.random.default_rng(args.seed)
X = pd.DataFrame(rng.normal(size=(3000, 3)), columns=["amount", "age", "score"])
model = LogisticRegression().fit(X, (X["amount"] > 0).astype(int))
with mlflow.start_run():
    mlflow.log_metric("accuracy", 0.97)
    mlflow.log_param("solver", "lbfgs")  # logged by the code, not a project parameter
    info = mlflow.sklearn.log_model(
        model, name="model", signature=infer_signature(X, model.predict(X))
    )
    steward.log_baseline(X, model_info=info)
    mlflow.register_model(info.model_uri, "fraud")
"""


@pytest.fixture
def project_version(workspace, tmp_path, monkeypatch):
    """fraud v1, registered by the `main` entry point of a project in a git repository."""
    # env_manager=local runs the project's `python` from PATH: this interpreter's.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "MLproject").write_text(
        textwrap.dedent("""\
        name: fraud
        entry_points:
          main:
            parameters: {seed: {type: int, default: 0}}
            command: "python train.py --seed {seed}"
        """)
    )
    (repo / "train.py").write_text(TRAIN)
    for args in (
        ["init", "-q"],
        ["add", "."],
        ["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "v1"],
    ):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    mlflow.set_tracking_uri(workspace.db_uri)
    mlflow.projects.run(str(repo), parameters={"seed": 3}, env_manager="local")
    # A later commit must not be what is retrained.
    (repo / "train.py").write_text("raise SystemExit('the wrong commit was checked out')\n")
    subprocess.run(
        [
            "git",
            "-C",
            str(repo),
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=t",
            "commit",
            "-qam",
            "broken",
        ],
        check=True,
    )
    return commit


def monitor_once(workspace, rules: str, policies: str = "") -> dict:
    folder = workspace.root / "current"
    folder.mkdir(exist_ok=True)
    batch(np.random.default_rng(9), shift=1.0).to_csv(folder / "now.csv", index=False)
    workspace.write_config(
        "monitors:\n  fraud:\n    model: models:/fraud/1\n"
        f"    data: {folder}/now.csv\n    drift_share: 0.25\n    rules:\n{rules}" + policies
    )
    result = CliRunner().invoke(cli, ["monitor", "run", "--json", "--no-log"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index("{") :])["runs"][0]


def test_retrain_reruns_the_project_at_its_commit_with_its_parameters(workspace, project_version):
    run = monitor_once(workspace, "      - when: drift\n        do: [retrain]\n")
    assert run["status"] == "drift"
    [action] = run["actions"]
    assert action["ok"], action
    assert f"@{project_version[:10]} (entry point main)" in action["result"]
    assert action["result"].endswith("FINISHED")
    client = mlflow.MlflowClient(workspace.db_uri)
    new_run_id = action["result"].split(": run ")[1].split()[0]
    new = client.get_run(new_run_id)
    # Only the declared parameter was passed: `--solver` would have failed train.py.
    assert new.data.params["seed"] == "3"
    assert new.data.tags["steward.retrained_from"] == "models:/fraud/1"
    assert new.data.tags["mlflow.source.git.commit"] == project_version
    assert workspace.plain_client().get_model_version("fraud", "2").run_id is not None
    entry = next(
        e for e in AuditLog(db.get_engine(workspace.db_uri)).entries() if e.action == "retrain"
    )
    assert (entry.actor, entry.decision, entry.details["commit"]) == (
        "steward-monitor",
        "allowed",
        project_version,
    )


def test_a_policy_can_refuse_the_retrain(workspace, project_version):
    run = monitor_once(
        workspace,
        "      - when: drift\n        do: [retrain]\n",
        "policies:\n  - use: required-tags\n    when: {action: retrain}\n"
        "    with: {tags: [retrainable]}\n",
    )
    [action] = run["actions"]
    assert not action["ok"]
    assert "[required-tags] missing tag retrainable" in action["result"]
    assert [v.version for v in workspace.plain_client().search_model_versions("name='fraud'")] == [
        1
    ]
