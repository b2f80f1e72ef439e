"""``steward doctor``: the versions in use, each against the range steward is tested with."""

from __future__ import annotations

import click

from mlflow_steward import compat
from mlflow_steward.cli.main import echo_json


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--internals/--no-internals",
    default=True,
    help="Also probe the MLflow internals steward relies on (imports MLflow: a few seconds).",
)
def doctor(as_json: bool, internals: bool) -> None:
    """Show Python, MLflow, SQLAlchemy, numpy and pandas against the tested ranges.

    Exit code 1 when one is outside its range or an MLflow internal changed.
    """
    rows = compat.components()
    probed: list[str] | None = None
    problem: str | None = None
    if internals:
        from mlflow_steward import _mlflow_adapter

        try:
            probed = _mlflow_adapter.check_internals()
        except Exception as exc:  # MlflowInternalsChanged, or MLflow failing to import
            problem = f"{type(exc).__name__}: {exc}"
    override = compat.override_set()
    if as_json:
        echo_json(
            {
                "components": [
                    {"name": r.name, "installed": r.installed, "tested": r.tested, "ok": r.ok}
                    for r in rows
                ],
                "internals": {"checked": probed, "problem": problem} if internals else None,
                compat.ALLOW_UNTESTED_ENV: override,
            }
        )
    else:
        click.echo(f"steward {compat.steward_version()}")
        click.echo(f"{'':12}{'installed':<14}{'tested':<16}")
        for r in rows:
            verdict = "ok" if r.ok else "OUTSIDE the tested range"
            click.echo(f"{r.name:<12}{r.installed or '-':<14}{r.tested:<16}{verdict}")
        if internals:
            if problem is None:
                click.echo(f"MLflow internals: {len(probed or [])} checked, all as expected")
            else:
                click.echo(f"MLflow internals: {problem}")
        click.echo(f"{compat.ALLOW_UNTESTED_ENV}: {'set' if override else 'not set'}")
        mlflow = next(r for r in rows if r.name == "mlflow")
        if not mlflow.ok:
            click.echo(compat.refusal("refusing to govern", mlflow.installed))
    if problem is not None or not all(r.ok for r in rows):
        raise SystemExit(1)
