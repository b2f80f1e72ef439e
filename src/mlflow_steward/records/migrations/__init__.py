"""Migrations of steward's own tables (alembic, as MLflow does for its tables).

Steward's tables live in the registry's database beside MLflow's, with their own version table
(``steward_alembic_version``; MLflow's is ``alembic_version``). A new database gets the current
tables directly (``records.db.get_engine``); a database made by an older release is upgraded only on
request, by ``steward db upgrade``, and until then the governed store and the server refuse to
start on it, naming that command. Release 0.1.0 kept no version: its tables are migration
``0001``.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from mlflow_steward.records import db, schema

_HERE = Path(__file__).parent


def _config(conn: sa.engine.Connection):  # alembic.config.Config
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_HERE))
    config.attributes["connection"] = conn
    return config


def upgrade(registry_uri: str) -> tuple[str | None, str]:
    """Upgrade steward's tables in the registry's database to this release's schema.

    Returns (revision before, revision after). Each migration runs in one transaction on
    PostgreSQL (DDL is transactional there); on SQLite each statement is applied in order.
    """
    from alembic import command

    uri = db.sql_uri(registry_uri)
    engine = db._new_engine(uri)
    try:
        with engine.begin() as conn:
            before = db.schema_revision(conn)
        if schema.newer_than_known(before):
            raise db.SchemaOutdated(
                f"steward's tables are at schema {before}, newer than this release knows "
                f"({schema.SCHEMA_REVISION}): upgrade mlflow-steward instead"
            )
        with engine.begin() as conn:
            config = _config(conn)
            if before == "0001" and not sa.inspect(conn).has_table(schema.VERSION_TABLE):
                command.stamp(config, "0001")  # 0.1.0 kept no version
            command.upgrade(config, "head")
        with engine.begin() as conn:
            after = db.schema_revision(conn)
    finally:
        engine.dispose()
    db.dispose_engines()  # engines cached before the upgrade checked the old schema
    return before, str(after)
