"""The tables of release 0.1.0 (which kept no schema version).

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "steward_audit",
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
    )
    op.create_index("ix_steward_audit_model", "steward_audit", ["model"])
    head = op.create_table(
        "steward_audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])
    if op.get_context().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER IF NOT EXISTS steward_audit_head_follows AFTER INSERT ON "
            "steward_audit BEGIN UPDATE steward_audit_head SET hash = NEW.hash WHERE id = 1; END"
        )
    op.create_table(
        "steward_alias_history",
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
    )
    op.create_index(
        "ix_steward_alias_history_model_alias", "steward_alias_history", ["model", "alias"]
    )
    op.create_table(
        "steward_approvals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("alias", sa.String(256), nullable=False),
        sa.Column("approver", sa.String(256), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("audit_seq", sa.Integer, nullable=False),
    )
    op.create_index(
        "ix_steward_approvals_target", "steward_approvals", ["model", "version", "alias"]
    )
    op.create_table(
        "steward_deployments",
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("requested", sa.String(512)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("endpoint", sa.String(512)),
        sa.Column("reason", sa.Text),
        sa.Column("options", sa.Text, nullable=False),
        sa.Column("traffic", sa.Text, nullable=False),
        sa.Column("runtime", sa.Text, nullable=False),
        sa.Column("created", sa.String(40), nullable=False),
        sa.Column("updated", sa.String(40), nullable=False),
    )
    op.create_table(
        "steward_deployment_events",
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
    )
    op.create_index(
        "ix_steward_deployment_events_deployment", "steward_deployment_events", ["deployment"]
    )
    op.create_table(
        "steward_monitor_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("monitor", sa.String(256), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.String(32)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("actions", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_steward_monitor_runs_monitor", "steward_monitor_runs", ["monitor"])
    op.create_table(
        "steward_pending_writes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.String(32)),
        sa.Column("alias", sa.String(256)),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("owner", sa.String(300), nullable=False),
    )
    op.create_index("ix_steward_pending_writes_model", "steward_pending_writes", ["model"])
