"""``steward plugins``: what is loaded, from which distribution, implementing which hooks."""

from __future__ import annotations

import click

from mlflow_steward.cli.main import StewardContext, echo_json


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def plugins(obj: StewardContext, as_json: bool) -> None:
    """List every plugin with its distribution, version, hooks and what it provides."""
    infos = obj.pm.plugin_infos()
    if as_json:
        echo_json(
            [
                {
                    "name": i.name,
                    "distribution": i.distribution,
                    "version": i.version,
                    "builtin": i.builtin,
                    "hooks": list(i.hooks),
                    "provides": {k: list(v) for k, v in i.provides.items()},
                }
                for i in infos
            ]
        )
        return
    for info in infos:
        origin = (
            "built-in"
            if info.builtin
            else (f"{info.distribution} {info.version}" if info.distribution else "in-process")
        )
        click.echo(f"{info.name}  ({origin})")
        click.echo(f"    hooks: {', '.join(info.hooks) or '-'}")
        for kind, names in info.provides.items():
            click.echo(f"    {kind}: {', '.join(names)}")
    blocked = [name for name, plugin in obj.pm.list_name_plugin() if plugin is None]
    if blocked:
        click.echo(f"disabled: {', '.join(sorted(blocked))}")
