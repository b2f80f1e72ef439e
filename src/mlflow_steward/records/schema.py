"""Steward's own tables, kept in the same database as the MLflow registry (SQLite or PostgreSQL).

All steward state lives here and nowhere in process memory, so several processes (and later several
servers) share one audit chain, one approval list and one lifecycle history. The migrations
(``records/migrations``) bring an older database to these declarations.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from mlflow_steward.plugins.events import DEFAULT_WORKSPACE

metadata = sa.MetaData()


def _workspace() -> sa.Column:
    """The MLflow workspace a row belongs to (``--enable-workspaces``; else ``default``)."""
    return sa.Column(
        "workspace",
        sa.String(63),
        nullable=False,
        default=DEFAULT_WORKSPACE,
        server_default=DEFAULT_WORKSPACE,
    )


audit = sa.Table(
    "steward_audit",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ts", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.String(32)),
    sa.Column("alias", sa.String(256)),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    _workspace(),
    sa.Index("ix_steward_audit_model", "model"),
)

# One row (id=1): the sequence number and hash of the newest entry. Updating it first serializes
# appends in the database itself, across processes and servers.
audit_head = sa.Table(
    "steward_audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

alias_history = sa.Table(
    "steward_alias_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("alias", sa.String(256)),
    sa.Column("stage", sa.String(32)),
    sa.Column("version", sa.String(32)),
    sa.Column("previous_version", sa.String(32)),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("ts", sa.String(40), nullable=False),
    sa.Column("audit_seq", sa.Integer, nullable=False),
    _workspace(),
    sa.Index("ix_steward_alias_history_model_alias", "model", "alias"),
)

approvals = sa.Table(
    "steward_approvals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("alias", sa.String(256), nullable=False),
    sa.Column("approver", sa.String(256), nullable=False),
    # request (someone asks for the move), approve, or reject
    sa.Column("verdict", sa.String(16), nullable=False, default="approve"),
    sa.Column("comment", sa.Text, nullable=False, default=""),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("audit_seq", sa.Integer, nullable=False),
    _workspace(),
    # What the review is bound to besides (workspace, model, version, alias): the action it
    # reviews (a promotion's approval does not approve the demotion), the registered model's
    # identity (its creation time in MLflow: a model deleted and created again, or another model
    # renamed onto the name, is another model) and the version's content digest when reviewed.
    sa.Column("action", sa.String(64), nullable=False, server_default="set_alias"),
    sa.Column("model_created", sa.BigInteger),
    sa.Column("digest", sa.String(80)),
    sa.Index("ix_steward_approvals_target", "model", "version", "alias"),
)

deployments = sa.Table(
    "steward_deployments",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("target", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("requested", sa.String(512)),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("endpoint", sa.String(512)),
    sa.Column("reason", sa.Text),
    # JSON: the checked target options, the traffic split {version: percent}, and what the target
    # needs to find its processes again (ports, local model paths, process ids).
    sa.Column("options", sa.Text, nullable=False),
    sa.Column("traffic", sa.Text, nullable=False),
    sa.Column("runtime", sa.Text, nullable=False),
    sa.Column("created", sa.String(40), nullable=False),
    sa.Column("updated", sa.String(40), nullable=False),
    _workspace(),
)

# Every step of every deployment, each with its audit entry: the history of versions it served.
deployment_events = sa.Table(
    "steward_deployment_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("deployment", sa.String(256), nullable=False),
    sa.Column("ts", sa.String(40), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.String(32)),
    sa.Column("from_version", sa.String(32)),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("audit_seq", sa.Integer, nullable=False),
    _workspace(),
    sa.Index("ix_steward_deployment_events_deployment", "deployment"),
)

# Every run of a configured monitor: its verdict and what its rules did (hysteresis and cooldown
# are read from here, so they hold across processes and restarts).
monitor_runs = sa.Table(
    "steward_monitor_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("monitor", sa.String(256), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.String(32)),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("run_id", sa.String(64)),
    # JSON: [{"rule": i, "action": name, "result": text, "ok": bool}, ...]
    sa.Column("actions", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    _workspace(),
    sa.Index("ix_steward_monitor_runs_monitor", "monitor"),
)

# Governed writes that were decided and are being made: a row is inserted before MLflow's write
# and deleted in the transaction that appends the write's audit entry. A row left behind means
# the process stopped in between; the next governed write on the model (under its lock) finds it,
# checks the registry, and appends the missing audit entry (governance/recovery.py).
pending_writes = sa.Table(
    "steward_pending_writes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.String(32)),
    sa.Column("alias", sa.String(256)),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),
    # host:pid of the writer, for the administrator reading a leftover row
    sa.Column("owner", sa.String(300), nullable=False),
    _workspace(),
    sa.Index("ix_steward_pending_writes_model", "model"),
)

# Content digests of model versions (governance/digest.py): the reserved tag
# ``steward.content_digest`` on a version holds the digest; the per-file hashes behind it are kept
# here, content-addressed, so that a changed artifact can be named.
manifests = sa.Table(
    "steward_manifests",
    metadata,
    sa.Column("digest", sa.String(80), primary_key=True),
    sa.Column("files", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created", sa.String(40), nullable=False),
)

#: Alembic's version table for steward's own tables (MLflow's is ``alembic_version``).
VERSION_TABLE = "steward_alembic_version"
#: The newest migration (``records/migrations/versions``): the schema this code needs.
SCHEMA_REVISION = "0002"

GENESIS_HASH = "0" * 64

#: SQLite: the head row takes each new entry's hash inside the entry's INSERT, one statement less
#: per governed write (PostgreSQL does both in one statement with a CTE, see records/audit.py).
SQLITE_HEAD_TRIGGER = (
    "CREATE TRIGGER IF NOT EXISTS steward_audit_head_follows AFTER INSERT ON steward_audit "
    "BEGIN UPDATE steward_audit_head SET hash = NEW.hash WHERE id = 1; END"
)

#: Where the migrations are (alembic's script location).
MIGRATIONS = Path(__file__).with_name("migrations")


def known_revisions() -> list[str]:
    """Every migration this release has, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def newer_than_known(revision: str | None) -> bool:
    return revision is not None and revision not in known_revisions()
