"""``steward lineage``: the whole chain of a version that went through training with a logged
dataset, evaluation, approval, an on-prem deployment and a drift verdict, and of a version with
none of that (its sections absent, not errors). Real MLflow (SQLite), real on-prem scoring
servers on 127.0.0.1, the CLI through click's runner and as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlflow_steward.cli.main import cli

pytestmark = pytest.mark.slow


@pytest.fixture
def world(traced: dict) -> dict:
    return traced


def _lineage(*args: str) -> dict:
    result = CliRunner().invoke(cli, ["lineage", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_every_element_of_a_traced_version(world):
    found = _lineage(f"models:/fraud/{world['version']}")
    assert found["uri"] == "models:/fraud/1"
    assert found["absent"] == []
    assert found["unavailable"] == []

    # the training data, and the same data again as mlflow.models.evaluate's input
    assert {d["digest"] for d in found["datasets"]} == {world["dataset"]}
    dataset = next(d for d in found["datasets"] if d["context"] == "training")
    assert dataset["name"] == "fraud-train"
    assert dataset["digest"] == world["dataset"]
    assert dataset["context"] == "training"
    assert dataset["source"]["uri"] == str(world["folder"] / "train.csv")

    run = found["run"]
    assert run["run_id"] == world["run_id"]
    assert run["author"] == "alice"
    assert run["git_commit"] == "3f2c1d0e9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e"
    assert run["git_repo"] == "https://git.example.com/ml/fraud.git"
    assert run["entry_point"] == "train"
    assert run["params"] == {"C": "0.5", "solver": "lbfgs"}
    assert run["metrics"]["accuracy_score"] > 0.9  # from mlflow.models.evaluate

    logged = found["logged_model"]
    assert logged["source_run_id"] == world["run_id"]
    assert logged["tags"]["steward.baseline"] == "steward-baseline"
    assert logged["metrics"]["accuracy_score"] > 0.9

    info = found["version_info"]
    assert info["aliases"] == ["production"]
    assert info["content_digest"].startswith("sha256:")
    assert info["run_id"] == world["run_id"]

    actions = [(e["action"], e["actor"], e["outcome"]) for e in found["decisions"]]
    assert ("create_model_version", os.environ.get("USER") or actions[0][1], "applied") in [
        (a, actions[0][1] if a == "create_model_version" else b, c) for a, b, c in actions
    ]
    assert ("request_approval", "alice", "applied") in actions
    assert ("approve", "bob", "applied") in actions
    assert ("set_alias", "carol", "applied") in actions
    assert ("deploy", "carol", "applied") in actions
    promotion = next(e for e in found["decisions"] if e["action"] == "set_alias")
    assert {r["policy"] for r in promotion["reasons"]} >= {"metric-threshold", "approvals"}
    assert all(r["allowed"] for r in promotion["reasons"])

    (move,) = found["moves"]
    assert (move["alias"], move["version"], move["previous_version"], move["actor"]) == (
        "production",
        "1",
        None,
        "carol",
    )

    reviews = [(r["verdict"], r["actor"], r["comment"]) for r in found["approvals"]]
    assert reviews == [
        ("request", "alice", "ready to ship"),
        ("approve", "bob", "metrics <b>fine</b>, approved"),
    ]

    (deployment,) = found["deployments"]
    assert deployment["name"] == "fraud-prod"
    assert deployment["target"] == "steward-onprem"
    assert deployment["kind"] == "onprem"
    assert deployment["status"] == "serving"
    assert deployment["serves_now"] is True
    assert deployment["endpoint"].startswith("http://127.0.0.1:")
    assert [s["kind"] for s in deployment["steps"]] == ["create"]

    evidence = {(e["action"], e["on"]) for e in found["evidence"]}
    assert evidence == {
        ("set_alias", "@production"),
        ("deploy", "deployment fraud-prod (create on steward-onprem)"),
    }

    (verdict,) = found["monitoring"]
    assert verdict["status"] == "drift"
    assert verdict["drift_share"] > 0
    assert verdict["link"].endswith(f"/runs/{verdict['run_id']}")
    from mlflow import MlflowClient

    monitoring_run = MlflowClient(world["uri"]).get_run(verdict["run_id"])
    assert monitoring_run.data.tags["steward.monitor.version"] == "1"


def test_text_output_names_every_section(world):
    result = CliRunner().invoke(cli, ["lineage", "models:/fraud@production"])
    assert result.exit_code == 0, result.output
    text = result.output
    for expected in (
        "fraud-train",
        world["dataset"],
        "3f2c1d0e9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e",
        "https://git.example.com/ml/fraud.git",
        "set_alias @production  allowed, applied  by carol",
        "approve  @production (set_alias) by bob",
        "fraud-prod on steward-onprem (onprem)",
        "drift, drift share",
    ):
        assert expected in text, (expected, text)
    assert "absent" not in text


def test_a_version_with_missing_pieces_shows_them_absent(world):
    found = _lineage(f"models:/fraud/{world['second']}")
    assert found["datasets"] == []
    assert found["approvals"] == []
    assert found["deployments"] == []
    assert found["monitoring"] == []
    assert found["moves"] == []
    assert found["evidence"] == []
    assert set(found["absent"]) == {
        "datasets",
        "approvals",
        "deployments",
        "monitoring",
        "moves",
        "evidence",
    }
    assert found["run"]["run_id"]  # trained, with a run
    text = CliRunner().invoke(cli, ["lineage", f"models:/fraud/{world['second']}"]).output
    assert "datasets: absent" in text
    assert "deployments: absent (never deployed)" in text
    assert "approvals: absent" in text


def test_reverse_lookups(world):
    by_deployment = _lineage("--deployment", "fraud-prod")
    assert by_deployment["deployment"]["version"] == "1"
    assert by_deployment["lineage"]["uri"] == "models:/fraud/1"
    by_data = _lineage("--dataset", world["dataset"])
    assert [v["uri"] for v in by_data["versions"]] == ["models:/fraud/1"]
    assert by_data["versions"][0]["dataset"] == "fraud-train"
    nothing = _lineage("--dataset", "0000")
    assert nothing["versions"] == []


def test_bad_input_is_one_clear_line(world):
    runner = CliRunner()
    unknown = runner.invoke(cli, ["lineage", "--deployment", "nope"])
    assert unknown.exit_code == 1
    assert "no deployment named 'nope'; deployments: fraud-prod" in unknown.output
    missing = runner.invoke(cli, ["lineage", "models:/fraud/99"])
    assert missing.exit_code == 1
    assert "models:/fraud/99 does not exist" in missing.output
    both = runner.invoke(cli, ["lineage", "models:/fraud/1", "--dataset", "x"])
    assert both.exit_code == 2
    assert "give one of" in both.output


def test_subprocess_cli(world):
    steward = Path(sys.executable).parent / "steward"
    done = subprocess.run(
        [str(steward), "lineage", "models:/fraud/1", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["deployments"][0]["name"] == "fraud-prod"


def test_text_output_neutralises_terminal_escapes():
    """Pure rendering: a name holding an ANSI escape sequence is shown, not executed."""
    from mlflow_steward.lineage.text import render

    lineage = {
        "uri": "models:/m/1",
        "datasets": [],
        "run": None,
        "logged_model": None,
        "version_info": {
            "name": "m",
            "version": "1",
            "created": None,
            "source": "s",
            "aliases": [],
            "stage": "None",
            "content_digest": None,
        },
        "decisions": [],
        "moves": [],
        "approvals": [
            {
                "verdict": "approve",
                "alias": "prod",
                "action": "set_alias",
                "actor": "bob\x1b[2J\x1b]0;pwned\x07",
                "comment": "ok",
            },
        ],
        "deployments": [],
        "monitoring": [],
        "evidence": [],
        "absent": [],
        "unavailable": [],
    }
    text = render(lineage)
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "\\x1b[2J" in text
