"""The committed 0.1.0 databases (tests/fixtures/steward-0.1.0) load, and read back on the code
that made them exactly as meta.json says: the audit chain verifies with its recorded length and
head, every steward table has its recorded rows, and MLflow's registry has the recorded models,
versions, tags, stages and aliases. A later release's migration test starts from the same files."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from mlflow_steward import db
from mlflow_steward.governance.audit import AuditLog
from tests.fixtures.steward_0_1_0 import META, copy_sqlite_fixture, load_postgres_fixture


def _registry(uri: str) -> dict[str, Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    out = {}
    for rm in client.search_registered_models():
        versions = client.search_model_versions(f"name = '{rm.name}'")
        out[rm.name] = {
            "tags": dict(rm.tags),
            "aliases": {alias: str(v) for alias, v in rm.aliases.items()},
            "versions": {
                str(v.version): {"stage": v.current_stage, "tags": dict(v.tags)} for v in versions
            },
        }
    return out


def _check_like_meta(uri: str, variant: str) -> None:
    expected = META[variant]
    engine = db.get_engine(uri)
    result = AuditLog(engine).verify()
    assert result.ok, result.problem
    assert result.entries == expected["audit_entries"]
    assert dict(result.head) == expected["audit_head"]
    with engine.connect() as conn:
        counts = {
            table: conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar()
            for table in META["steward_tables"]
        }
        decisions = dict(
            conn.execute(
                sa.text("SELECT decision, COUNT(*) FROM steward_audit GROUP BY decision")
            ).all()
        )
    assert counts == expected["row_counts"]
    assert decisions == expected["audit_decisions"]
    assert decisions.get("refused", 0) > 0
    assert all(counts[t] > 0 for t in META["steward_tables"] if t != "steward_pending_writes")
    assert _registry(uri) == expected["registered_models"]


def test_meta_describes_both_variants_made_by_0_1_0():
    assert META["steward_version"] == "0.1.0"
    for variant in ("sqlite", "postgresql"):
        assert META[variant]["audit_entries"] == META[variant]["row_counts"]["steward_audit"]
        assert set(META[variant]["registered_models"]) == {"fraud", "churn"}
        assert len(META[variant]["registered_models"]["fraud"]["versions"]) >= 3


def test_sqlite_fixture_loads_and_verifies(tmp_path):
    uri = copy_sqlite_fixture(tmp_path / "copy")
    _check_like_meta(uri, "sqlite")
    # The artifact locations point into the copy: the production version still loads.
    import mlflow.pyfunc

    mlflow.set_registry_uri(uri)
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/fraud@production")
    assert model.metadata.signature is not None
    with sa.create_engine(uri).connect() as conn:
        locations = [
            *conn.execute(sa.text("SELECT artifact_location FROM experiments")).scalars(),
            *conn.execute(sa.text("SELECT artifact_uri FROM runs")).scalars(),
        ]
    assert all(str(tmp_path / "copy") in location for location in locations)
    assert not any(META["sqlite"]["artifact_root"] in location for location in locations)


@pytest.mark.postgres
def test_postgresql_fixture_loads_and_verifies(postgres_uri):
    load_postgres_fixture(postgres_uri)
    _check_like_meta(postgres_uri, "postgresql")
