"""Steward's tables change only through migrations (alembic, ``steward db upgrade``).

- A new database gets the same schema that running every migration gives.
- A database made by release 0.1.0 (tests/fixtures/steward-0.1.0, committed by
  make_steward_0_1_0.py with that release installed) is refused by the governed store, the server
  and the CLI until ``steward db upgrade`` runs, with a message naming that command; after the
  upgrade every audit entry still verifies (same count, same head), every row is kept, MLflow's
  registry is untouched, the old reviews are listed but no longer count (they were not bound to
  what was reviewed), and the quickstart's steps run on the upgraded database.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mlflow_steward.records import db, migrations, schema
from mlflow_steward.records.audit import AuditLog
from tests.fixtures.steward_0_1_0 import META, copy_sqlite_fixture, load_postgres_fixture

STEWARD = str(Path(sys.executable).with_name("steward"))


def _mlflow_minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


# The 0.1.0 databases hold MLflow's tables as the MLflow that made them left them (meta.json's
# mlflow_version). An older MLflow cannot open a database of a newer one (it refuses: "Detected
# out-of-date database schema", and there is no MLflow downgrade), so on the oldest tested MLflow
# (the mlflow-oldest edge) these tests cannot run; the upgrade path they check is steward's own
# and is the same code on every MLflow in the range.
needs_fixture_mlflow = pytest.mark.skipif(
    _mlflow_minor(importlib.metadata.version("mlflow")) < _mlflow_minor(META["mlflow_version"]),
    reason=(
        f"the 0.1.0 fixture databases were made on MLflow {META['mlflow_version']}; the installed "
        f"MLflow {importlib.metadata.version('mlflow')} cannot open a database of a newer MLflow"
    ),
)


def _steward(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_STEWARD_CONFIG")}
    return subprocess.run(
        [STEWARD, *args], capture_output=True, text=True, timeout=900, env=env, cwd=cwd
    )


def _schema_differences(uri: str) -> list[Any]:
    engine = sa.create_engine(uri)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "include_name": lambda name, kind, _parent: (
                        kind != "table"
                        or (name.startswith("steward_") and name != schema.VERSION_TABLE)
                    )
                },
            )
            return compare_metadata(context, schema.metadata)
    finally:
        engine.dispose()


def test_every_migration_from_nothing_gives_the_declared_schema(tmp_path):
    migrated = f"sqlite:///{tmp_path / 'migrated.db'}"
    assert migrations.upgrade(migrated) == (None, schema.SCHEMA_REVISION)
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    db.get_engine(fresh)
    assert _schema_differences(fresh) == []
    assert _schema_differences(migrated) == []
    assert schema.known_revisions()[-1] == schema.SCHEMA_REVISION
    # Running it again changes nothing.
    assert migrations.upgrade(migrated) == (schema.SCHEMA_REVISION, schema.SCHEMA_REVISION)


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


def _upgrade_and_check(uri: str, variant: str, cwd: Path) -> None:
    expected = META[variant]
    # Before the upgrade: refused, naming the command, nothing written.
    with pytest.raises(db.SchemaOutdated, match=r"steward db upgrade --registry-uri"):
        db.get_engine(uri)
    refused = _steward("--registry-uri", uri, "audit", "verify", cwd=cwd)
    assert refused.returncode == 1
    assert "older than this release needs" in refused.stderr
    assert "steward db upgrade" in refused.stderr
    status = _steward("db", "status", "--registry-uri", uri, cwd=cwd)
    assert status.returncode == 1
    assert "schema 0001" in status.stdout

    upgraded = _steward("db", "upgrade", "--registry-uri", uri, cwd=cwd)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"from schema 0001 to {schema.SCHEMA_REVISION}" in upgraded.stdout
    again = _steward("db", "upgrade", "--registry-uri", uri, cwd=cwd)
    assert "nothing to do" in again.stdout

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
        workspaces = {
            table: set(conn.execute(sa.text(f"SELECT DISTINCT workspace FROM {table}")).scalars())
            for table in META["steward_tables"]
            if table != "steward_audit_head" and counts[table]
        }
        actions = set(conn.execute(sa.text("SELECT action FROM steward_approvals")).scalars())
    assert counts == expected["row_counts"]
    assert all(found == {"default"} for found in workspaces.values()), workspaces
    assert actions == {"set_alias"}  # 0.1.0 reviewed promotions only
    assert _registry(uri) == expected["registered_models"]
    verified = _steward("--registry-uri", uri, "audit", "verify", cwd=cwd)
    assert verified.returncode == 0, verified.stderr
    assert f"audit log OK: {expected['audit_entries']} entries" in verified.stdout


@needs_fixture_mlflow
def test_a_0_1_0_sqlite_database_is_refused_then_upgraded_keeping_everything(tmp_path):
    uri = copy_sqlite_fixture(tmp_path / "copy")
    _upgrade_and_check(uri, "sqlite", tmp_path)


@needs_fixture_mlflow
@pytest.mark.postgres
def test_a_0_1_0_postgresql_database_is_refused_then_upgraded_keeping_everything(
    postgres_uri, tmp_path
):
    load_postgres_fixture(postgres_uri)
    _upgrade_and_check(postgres_uri, "postgresql", tmp_path)


@needs_fixture_mlflow
def test_the_server_refuses_to_start_on_a_0_1_0_database(tmp_path):
    from tests.servers import mlflow_server

    uri = copy_sqlite_fixture(tmp_path / "copy")
    with (
        pytest.raises(RuntimeError, match=r"steward db upgrade") as err,
        mlflow_server(uri, tmp_path, timeout=90),
    ):
        pass
    assert "older than this release needs" in str(err.value)


@needs_fixture_mlflow
@pytest.mark.slow
def test_the_quickstart_runs_on_an_upgraded_0_1_0_database(tmp_path):
    folder = tmp_path / "qs"
    uri = copy_sqlite_fixture(folder)
    assert _steward("db", "upgrade", "--registry-uri", uri, cwd=tmp_path).returncode == 0
    proc = _steward("quickstart", "--dir", str(folder), "--keep", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "ALLOWED: models:/breast-cancer@production -> version 1" in out
    assert "ROLLED BACK" in out
    # The chain runs on from the 0.1.0 entries: they and the quickstart's all verify.
    log = AuditLog(db.get_engine(uri))
    result = log.verify()
    assert result.ok, result.problem
    assert result.entries > META["sqlite"]["audit_entries"]
    # The quickstart verified the chain with the 0.1.0 entries in it (it adds a few more after,
    # stopping its deployment).
    verified = re.search(r"audit log OK: (\d+) entries", out)
    assert verified, out[-2000:]
    assert META["sqlite"]["audit_entries"] < int(verified.group(1))
