"""Alembic environment for steward's tables: run on the connection ``migrations.upgrade`` gives,
with steward's own version table, looking only at ``steward_*`` tables."""

from alembic import context

from mlflow_steward.records import schema


def _steward_only(name: str | None, type_: str, _parent: object) -> bool:
    return type_ != "table" or bool(name and name.startswith("steward_"))


connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=schema.metadata,
    version_table=schema.VERSION_TABLE,
    include_name=_steward_only,
)
with context.begin_transaction():
    context.run_migrations()
