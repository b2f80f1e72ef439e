"""``steward config check``: validate the configuration against the installed plugins."""

from __future__ import annotations

import click

from mlflow_steward.cli.main import StewardContext


@click.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("check")
@click.pass_obj
def check_config(obj: StewardContext) -> None:
    """Parse the configuration and match every policy with a plugin; print what applies."""
    from mlflow_steward.governance.engine import PolicyEngine

    engine = PolicyEngine(obj.pm, obj.config)
    source = obj.config.source or "(no configuration file: defaults only)"
    click.echo(f"{source}: OK, {len(engine.policies)} policies")
    for p in engine.policies:
        when = p.when
        scope = ", ".join(
            f"{k}={'|'.join(v)}"
            for k, v in (
                ("action", when.actions or tuple(sorted(p.registered.policy.actions))),
                ("alias", when.aliases),
                ("stage", when.stages),
                ("model", when.models),
                ("actor", when.actors),
            )
            if v
        )
        click.echo(
            f"  {p.label} ({p.registered.policy.name}, plugin {p.registered.plugin}): {scope}"
        )
