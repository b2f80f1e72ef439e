"""Evidence: what each governed promotion and deploy rested on, recorded as an artifact of the
version's source run with its sha256 in a reserved tag; ``steward evidence --verify`` names an
artifact that was changed; a failed write never undoes nor fails the allowed action."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlflow_steward.cli.main import cli

pytestmark = pytest.mark.slow


def _evidence(*args: str):
    return CliRunner().invoke(cli, ["evidence", *args])


def _documents(traced: dict) -> dict[str, dict]:
    result = _evidence(f"models:/fraud/{traced['version']}", "--json")
    assert result.exit_code == 0, result.output
    return {e["action"]: e for e in json.loads(result.output)["evidence"]}


def test_promotion_and_deploy_evidence_holds_each_policy_and_its_inputs(traced):
    found = _documents(traced)
    assert set(found) == {"set_alias", "deploy"}
    assert all(e["ok"] for e in found.values())

    promotion = found["set_alias"]
    assert promotion["path"].startswith(f"runs:/{traced['run_id']}/steward/evidence/")
    doc = promotion["document"]
    assert (doc["model"], doc["version"], doc["alias"], doc["actor"]) == (
        "fraud",
        "1",
        "production",
        "carol",
    )
    policies = {p["policy"]: p for p in doc["decision"]["policies"]}
    assert policies["metric-threshold"]["allowed"] is True
    assert policies["metric-threshold"]["options"]["metric"] == "accuracy_score"
    assert policies["metric-threshold"]["options"]["min"] == 0.9
    assert policies["approvals"]["options"]["count"] == 1
    inputs = doc["inputs"]
    assert inputs["evaluation_metrics"]["accuracy_score"] > 0.9
    assert [(a["verdict"], a["actor"]) for a in inputs["approvals"]] == [
        ("request", "alice"),
        ("approve", "bob"),
    ]
    assert inputs["content_digest"] == inputs["recorded_digest"]
    assert inputs["content_digest"].startswith("sha256:")
    assert inputs["changed_files"] == []
    assert any(r.startswith("scikit-learn") for r in inputs["requirements"])
    assert inputs["baseline"]["digest"].startswith("sha256:")
    assert "steward-baseline/baseline.parquet" in inputs["baseline"]["files"]

    deploy = found["deploy"]["document"]
    assert deploy["deployment"]["name"] == "fraud-prod"
    assert deploy["deployment"]["status"] == "serving"
    assert deploy["context"]["target"] == "steward-onprem"
    assert deploy["inputs"]["content_digest"] == inputs["content_digest"]

    # On the tamper-evident audit log too, with the same digest.
    from mlflow_steward.records import db
    from mlflow_steward.records.audit import AuditLog

    entries = AuditLog(db.get_engine(traced["uri"])).entries(model="fraud")
    recorded = [e for e in entries if e.action == "record_evidence"]
    assert {e.details["sha256"] for e in recorded} == {e["sha256"] for e in found.values()}
    assert {e.outcome for e in recorded} == {"applied"}

    text = _evidence(f"models:/fraud/{traced['version']}", "--verify")
    assert text.exit_code == 0, text.output
    assert "2 evidence artifact(s) verified" in text.output
    assert "[metric-threshold] allow" in text.output
    assert "min=0.9" in text.output


def test_a_changed_evidence_artifact_fails_verify_naming_it(traced):
    from mlflow import MlflowClient

    entry = _documents(traced)["set_alias"]
    run = MlflowClient(traced["uri"]).get_run(traced["run_id"])
    relative = entry["path"].removeprefix(f"runs:/{traced['run_id']}/")
    artifact = Path(run.info.artifact_uri.removeprefix("file://")) / relative
    original = artifact.read_bytes()
    changed = json.loads(original)
    changed["decision"]["policies"][0]["options"]["min"] = 0.1
    try:
        artifact.write_text(json.dumps(changed, indent=2, sort_keys=True))
        result = _evidence(f"models:/fraud/{traced['version']}", "--verify")
        assert result.exit_code == 1
        assert "evidence does not verify" in result.output
        assert f"{entry['path']} was changed" in result.output
        assert entry["sha256"] in result.output
        assert result.output.count("was changed") == 1  # the deploy's evidence still matches
        artifact.unlink()
        gone = _evidence(f"models:/fraud/{traced['version']}", "--verify")
        assert gone.exit_code == 1
        assert f"cannot read {entry['path']}" in gone.output
    finally:
        artifact.write_bytes(original)
    assert _evidence(f"models:/fraud/{traced['version']}", "--verify").exit_code == 0


def test_failed_evidence_write_is_audited(traced):
    """The artifact store refuses the write (a real error from MLflow's local artifact
    repository: where the evidence folder goes is a file): the promotion stands, the failure is
    on the audit log, and the version shows no evidence."""
    from mlflow import MlflowClient

    from mlflow_steward.records import db
    from mlflow_steward.records.audit import AuditLog
    from tests.monitoring_helpers import train

    third = train(traced["uri"], seed=2, governed=True)
    client = MlflowClient(traced["uri"])
    mv = client.get_model_version("fraud", third)
    root = Path(client.get_run(mv.run_id).info.artifact_uri.removeprefix("file://"))
    blocker = root / "steward"
    assert not blocker.exists()
    root.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    try:
        result = CliRunner().invoke(cli, ["promote", f"models:/fraud/{third}", "--to", "staging"])
        assert result.exit_code == 0, result.output
        assert str(client.get_model_version_by_alias("fraud", "staging").version) == third
    finally:
        blocker.unlink()
    last = AuditLog(db.get_engine(traced["uri"])).entries(model="fraud", newest_first=True)[0]
    assert last.action == "record_evidence"
    assert last.version == third
    assert last.outcome.startswith("failed: ")
    listed = _evidence(f"models:/fraud/{third}", "--verify")
    assert listed.exit_code == 0
    assert "no evidence recorded" in listed.output
