"""The per-file hashes behind each content digest, kept in ``steward_manifests``.

The digest itself is on the version (reserved tag ``steward.content_digest``); the files behind it
are kept here, content-addressed (one row per digest, whatever model or version has it), so that a
refusal can name the files that changed since registration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mlflow_steward.records import db, schema
from mlflow_steward.records.audit import utc_now
from mlflow_steward.records.prepared import Prepared


def _insert_if_new(dialect: str) -> Prepared:
    """One statement that keeps a manifest unless its digest is kept already (the same digest
    means the same files): ``INSERT OR IGNORE`` on SQLite, ``ON CONFLICT DO NOTHING`` on
    PostgreSQL, where two models may register the same files at once."""
    statement: sa.Insert
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        statement = insert(schema.manifests).on_conflict_do_nothing()
    else:
        statement = schema.manifests.insert().prefix_with("OR IGNORE", dialect="sqlite")
    return Prepared(statement.values({c.name: sa.bindparam(c.name) for c in schema.manifests.c}))


_INSERTS: dict[str, Prepared] = {}


def record(conn: Connection, content: Any) -> None:
    """Keep ``content``'s (a ``ContentDigest``) files, in the caller's transaction (every
    registration runs it: one prepared statement)."""
    dialect = conn.dialect.name
    statement = _INSERTS.get(dialect)
    if statement is None:
        statement = _INSERTS[dialect] = _insert_if_new(dialect)
    statement.rows(
        conn,
        {
            "digest": content.digest,
            "files": json.dumps(dict(content.files), sort_keys=True, separators=(",", ":")),
            "size": int(content.size),
            "created": utc_now(),
        },
    )


def recorded_files(engine: Engine, digest: str) -> Mapping[str, str] | None:
    """``{relative path: sha256}`` of the files behind ``digest``, or ``None``."""
    with db.reading(engine) as conn:
        files = conn.execute(
            sa.select(schema.manifests.c.files).where(schema.manifests.c.digest == digest)
        ).scalar()
    return None if files is None else json.loads(files)
