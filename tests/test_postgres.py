"""The issue's walkthrough on PostgreSQL: same refusals, same audit chain, tampering detected."""

from __future__ import annotations

import mlflow
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_steward.records import db
from mlflow_steward.records.audit import AuditLog
from tests.conftest import EXAMPLE_CONFIG

pytestmark = pytest.mark.postgres


#: One entry per decision of the walkthrough, in order (the 11 that verify counts).
WALKTHROUGH_ENTRIES = [
    # mlflow.register_model of the unsigned model: the model is created, its first version
    # refused, and steward removes the empty model it left
    ("create_registered_model", "allowed"),
    ("create_model_version", "refused"),
    ("delete_registered_model", "allowed"),
    # the good model: created again, with version 1; the weak one: version 2 (the model exists)
    ("create_registered_model", "allowed"),
    ("create_model_version", "allowed"),
    ("create_model_version", "allowed"),
    ("set_alias", "refused"),  # required-tags: no owner
    ("set_model_version_tag", "allowed"),
    ("set_alias", "refused"),  # metric-threshold: accuracy 0.5
    ("set_model_version_tag", "allowed"),
    ("set_alias", "allowed"),
    ("record_evidence", "allowed"),  # the evidence of that promotion (builtin.evidence)
]


def test_walkthrough_on_postgres(postgres_uri, tmp_path, monkeypatch, log_model_factory):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "steward.yaml"
    config.write_text(EXAMPLE_CONFIG)
    monkeypatch.setenv("MLFLOW_STEWARD_CONFIG", str(config))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", postgres_uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"steward+{postgres_uri}")
    client = MlflowClient()
    plain = MlflowClient(registry_uri=postgres_uri)

    with pytest.raises(MlflowException) as err:
        mlflow.register_model(log_model_factory(postgres_uri, signature=False).uri, "fraud")
    assert err.value.error_code == "PERMISSION_DENIED"
    assert "require-signature" in err.value.message
    assert plain.search_registered_models() == []

    good = mlflow.register_model(log_model_factory(postgres_uri, accuracy=0.9).uri, "fraud")
    weak = mlflow.register_model(log_model_factory(postgres_uri, accuracy=0.5).uri, "fraud")
    with pytest.raises(MlflowException, match="required-tags"):
        client.set_registered_model_alias("fraud", "production", good.version)
    client.set_model_version_tag("fraud", weak.version, "owner", "alice")
    with pytest.raises(MlflowException, match="metric-threshold"):
        client.set_registered_model_alias("fraud", "production", weak.version)
    client.set_model_version_tag("fraud", good.version, "owner", "alice")
    client.set_registered_model_alias("fraud", "production", good.version)
    assert plain.get_model_version_by_alias("fraud", "production").version == good.version

    log = AuditLog(db.get_engine(postgres_uri))
    result = log.verify()
    assert result.ok
    assert result.entries == len(WALKTHROUGH_ENTRIES) == 12
    assert [(e.action, e.decision) for e in log.entries()] == WALKTHROUGH_ENTRIES
    with db.get_engine(postgres_uri).begin() as conn:
        conn.execute(sa.text("UPDATE steward_audit SET actor = 'mallory' WHERE seq = 7"))
    broken = log.verify()
    assert not broken.ok
    assert broken.bad_seq == 7
    assert "edited" in broken.problem
