"""Workspaces on every table; reviews bound to action, model identity and content; manifests.

- ``workspace`` (MLflow's workspace, ``default`` without ``--enable-workspaces``) on every table:
  existing rows belong to ``default``, as MLflow's own rows do.
- ``steward_approvals``: ``action`` (existing reviews were of promotions: ``set_alias``),
  ``model_created`` and ``digest`` (unknown for existing reviews, which therefore no longer count:
  they were not bound to what was reviewed).
- ``steward_manifests``: per-file hashes behind each content digest.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = (
    "steward_audit",
    "steward_alias_history",
    "steward_approvals",
    "steward_deployments",
    "steward_deployment_events",
    "steward_monitor_runs",
    "steward_pending_writes",
)


def upgrade() -> None:
    for table in TABLES:
        op.add_column(
            table,
            sa.Column("workspace", sa.String(63), nullable=False, server_default="default"),
        )
    op.add_column(
        "steward_approvals",
        sa.Column("action", sa.String(64), nullable=False, server_default="set_alias"),
    )
    op.add_column("steward_approvals", sa.Column("model_created", sa.BigInteger))
    op.add_column("steward_approvals", sa.Column("digest", sa.String(80)))
    op.create_table(
        "steward_manifests",
        sa.Column("digest", sa.String(80), primary_key=True),
        sa.Column("files", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created", sa.String(40), nullable=False),
    )
