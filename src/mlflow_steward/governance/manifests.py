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

from mlflow_steward import db
from mlflow_steward.governance.audit import utc_now


def record(conn: Connection, content: Any) -> None:
    """Keep ``content``'s (a ``ContentDigest``) files, in the caller's transaction; a digest
    already kept is left as it is (the same digest means the same files)."""
    table = db.manifests
    row = {
        "digest": content.digest,
        "files": json.dumps(dict(content.files), sort_keys=True, separators=(",", ":")),
        "size": int(content.size),
        "created": utc_now(),
    }
    if conn.dialect.name == "postgresql":
        # Two models registering the same files at once (writes on different models do not
        # wait for each other there): the second insert is a no-op, not an integrity error.
        from sqlalchemy.dialects.postgresql import insert

        conn.execute(insert(table).values(row).on_conflict_do_nothing())
        return
    # SQLite: write transactions take turns (BEGIN IMMEDIATE), so the check holds.
    exists = conn.execute(sa.select(table.c.digest).where(table.c.digest == row["digest"]))
    if exists.first() is None:
        conn.execute(table.insert().values(row))


def recorded_files(engine: Engine, digest: str) -> Mapping[str, str] | None:
    """``{relative path: sha256}`` of the files behind ``digest``, or ``None``."""
    with db.reading(engine) as conn:
        files = conn.execute(
            sa.select(db.manifests.c.files).where(db.manifests.c.digest == digest)
        ).scalar()
    return None if files is None else json.loads(files)
