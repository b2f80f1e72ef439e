"""Steps 18-19: the audit log, and its hash chain verified."""

from __future__ import annotations

import click

from mlflow_steward.demo.data import Workspace
from mlflow_steward.demo.output import step


def audit_steps(workspace: Workspace) -> None:
    from mlflow_steward.records import db
    from mlflow_steward.records.audit import AuditLog

    step(18, "The audit log (steward audit log)")
    log = AuditLog(db.get_engine(workspace.db_uri))
    for e in log.entries():
        target = (
            e.model + (f"/{e.version}" if e.version else "") + (f"@{e.alias}" if e.alias else "")
        )
        failed = [r["policy"] for r in e.reasons if not r["allowed"]]
        why = f" by {', '.join(failed)}" if failed else ""
        click.echo(
            f"    #{e.seq:<3} {e.actor:<16} {e.action:<26} {target:<26} {e.decision}{why} "
            f"({e.outcome[:70]})"
        )

    step(19, "Verifying the audit chain (steward audit verify)")
    result = log.verify()
    if not result.ok:
        raise click.ClickException(f"audit chain broken: {result.problem}")
    click.secho(f"    audit log OK: {result.entries} entries, hash chain intact", fg="green")
