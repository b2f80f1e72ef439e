"""``steward deploy``: one command set for every deployment target."""

from __future__ import annotations

import sys
from typing import Any

import click

from mlflow_steward.cli.main import StewardContext, echo_json
from mlflow_steward.errors import DeploymentError


def _host(obj: StewardContext, *, launch: bool = True) -> Any:
    from mlflow_steward.deployment.host import DeploymentHost

    def progress(message: str) -> None:
        click.echo(f"  {message}", err=True)

    return DeploymentHost(obj.session(), progress=progress, launch=launch)


def _config(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r}: use KEY=VALUE", param_hint="-C/--config")
        out[key.strip()] = value.strip()
    return out


def _traffic(value: str | None) -> int | None:
    if value is None:
        return None
    key, sep, pct = value.partition("=")
    if key.strip() != "new" or not sep or not pct.strip().isdigit():
        raise click.BadParameter(f"{value!r}: use new=PERCENT, e.g. new=10", param_hint="--traffic")
    return int(pct)


def _show(info: Any, as_json: bool) -> None:
    if as_json:
        echo_json(info.to_dict())
        return
    split = ", ".join(f"v{v} {p}%" for v, p in info.traffic.items())
    click.echo(
        f"{info.name}: {info.status} on {info.target} -- {info.model} v{info.version}"
        f" ({split}) at {info.endpoint or '-'}"
    )
    if info.reason:
        click.echo(f"  reason: {info.reason}")


_config_option = click.option(
    "-C", "--config", "config", multiple=True, metavar="KEY=VALUE", help="Target option."
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group()
def deploy() -> None:
    """Deploy registered versions to on-prem, cloud and edge targets (governed, audited)."""


@deploy.command()
@click.argument("name")
@click.option("-m", "--model-uri", required=True, help="models:/NAME/VERSION or models:/NAME@ALIAS")
@click.option("-t", "--target", help="Deployment target (see `steward deploy targets`).")
@_config_option
@click.option(
    "--emit",
    type=click.Choice(["systemd"]),
    help="Record and prepare the deployment, start nothing, and write service unit files.",
)
@click.option("--out", "out_dir", default=".", show_default=True, help="Where --emit writes.")
@click.option(
    "--user", "service_user", help="With --emit systemd: the account the service runs as."
)
@_json_option
@click.pass_obj
def create(
    obj: StewardContext,
    name: str,
    model_uri: str,
    target: str | None,
    config: tuple[str, ...],
    emit: str | None,
    out_dir: str,
    service_user: str | None,
    as_json: bool,
) -> None:
    """Create deployment NAME serving MODEL_URI (the alias is resolved and recorded)."""
    host = _host(obj, launch=emit is None)
    if emit:  # before anything is recorded: only a target with a gateway runs as a service
        _, target_name = host.options(name, target or "", _config(config))
        if not hasattr(host.client(target_name), "gateway_command"):
            raise DeploymentError(f"target {target_name!r} cannot be run as a systemd service")
    info = host.create(name, model_uri, target=target, config=_config(config))
    if emit:
        _emit(host, info, out_dir, service_user)
    _show(info, as_json)


def _emit(host: Any, info: Any, out_dir: str, user: str | None) -> None:
    from mlflow_steward.deployment.onprem.systemd import write_unit

    path = write_unit(out_dir, info.name, host.client(info.target).gateway_command(info), user=user)
    click.echo(f"wrote {path}", err=True)
    click.echo(
        f"  install: sudo cp {path} /etc/systemd/system/ && sudo systemctl daemon-reload && "
        f"sudo systemctl enable --now {path.name}",
        err=True,
    )


@deploy.command()
@click.argument("name")
@click.option("-m", "--model-uri", help="New version (default: re-resolve the recorded URI).")
@_config_option
@click.option("--traffic", help="Canary: new=PERCENT of requests to the new version.")
@_json_option
@click.pass_obj
def update(
    obj: StewardContext,
    name: str,
    model_uri: str | None,
    config: tuple[str, ...],
    traffic: str | None,
    as_json: bool,
) -> None:
    """Blue/green update behind the health gate (or a canary with --traffic new=PERCENT)."""
    info = _host(obj).update(name, model_uri, config=_config(config), traffic=_traffic(traffic))
    _show(info, as_json)


@deploy.command("promote-canary")
@click.argument("name")
@_json_option
@click.pass_obj
def promote_canary(obj: StewardContext, name: str, as_json: bool) -> None:
    """Send all requests to the canary version."""
    _show(_host(obj).promote_canary(name), as_json)


@deploy.command()
@click.argument("name")
@click.option("--to-version", help="Version to go back to (default: the one served before).")
@_json_option
@click.pass_obj
def rollback(obj: StewardContext, name: str, to_version: str | None, as_json: bool) -> None:
    """Undo a canary, or switch back to the version served before."""
    _show(_host(obj).rollback(name, to_version=to_version), as_json)


@deploy.command()
@click.argument("name")
@click.pass_obj
def delete(obj: StewardContext, name: str) -> None:
    """Stop the deployment and forget it (request logs stay on disk)."""
    _host(obj).delete(name)
    click.echo(f"deleted {name}")


@deploy.command("list")
@click.option("-t", "--target", help="Only this target's deployments.")
@_json_option
@click.pass_obj
def list_cmd(obj: StewardContext, target: str | None, as_json: bool) -> None:
    """Every recorded deployment."""
    infos = _host(obj).list(target)
    if as_json:
        echo_json([i.to_dict() for i in infos])
        return
    if not infos:
        click.echo("no deployments")
    for info in infos:
        _show(info, False)


@deploy.command()
@click.argument("name")
@_json_option
@click.pass_obj
def get(obj: StewardContext, name: str, as_json: bool) -> None:
    """A deployment's recorded state."""
    _show(_host(obj).get(name), as_json)


@deploy.command()
@click.argument("name")
@click.option("-i", "--input-path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output-path", type=click.Path(dir_okay=False))
@click.pass_obj
def predict(obj: StewardContext, name: str, input_path: str, output_path: str | None) -> None:
    """Send INPUT_PATH (JSON: a DataFrame as records/split, or a serving payload)."""
    import json

    import pandas as pd

    with open(input_path, encoding="utf-8") as handle:
        payload = json.load(handle)
    keys = {"dataframe_split", "dataframe_records", "instances", "inputs"}
    if isinstance(payload, dict) and keys & set(payload):
        inputs = payload  # a serving payload, sent as it is
    elif isinstance(payload, dict) and {"columns", "data"} <= set(payload):
        inputs = pd.DataFrame(payload["data"], columns=payload["columns"])  # split orientation
    else:
        inputs = pd.DataFrame(payload)  # records, or a mapping of columns
    result = _host(obj).predict(name, inputs)
    text = result.to_json(orient="records")
    if output_path:
        with open(output_path, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        click.echo(text)


@deploy.command()
@click.argument("name")
@_json_option
@click.pass_obj
def status(obj: StewardContext, name: str, as_json: bool) -> None:
    """Version, health, traffic split, request counts and error rate."""
    data = _host(obj).status(name)
    if as_json:
        echo_json(data)
        return
    live = data["live"]  # checked by the host against the documented shape
    health = live["health"]
    click.echo(f"{data['name']} on {data['target']}: {data['status']} at {data['endpoint']}")
    click.echo(f"  model:    {data['model']} v{live.get('version') or data['version']}")
    detail = f" ({health['detail']})" if health["detail"] else ""
    click.echo(f"  health:   {'healthy' if health['healthy'] else 'UNHEALTHY'}{detail}")
    if live.get("gateway") is not None:
        click.echo(f"  gateway:  {live['gateway']}")
    if live.get("traffic"):
        click.echo("  traffic:  " + ", ".join(f"v{v} {p}%" for v, p in live["traffic"].items()))
    if {"requests", "errors", "error_rate"} <= set(live):
        click.echo(
            f"  requests: {live['requests']}, errors: {live['errors']} "
            f"(error rate {live['error_rate']:.2%})"
        )
    for slot in live.get("slots") or []:
        click.echo(
            f"    v{slot.get('version', '?')} [{slot.get('role', '-')}] port "
            f"{slot.get('port', '-')}: {slot.get('requests', 0)} requests, "
            f"{slot.get('errors', 0)} errors, {slot.get('error_rate', 0.0):.1%} over the window"
        )
    if data.get("reason"):
        click.echo(f"  last:     {data['reason']}")


@deploy.command()
@click.argument("name")
@_json_option
@click.pass_obj
def history(obj: StewardContext, name: str, as_json: bool) -> None:
    """Every step of the deployment: versions served, switches, rollbacks and why."""
    host = _host(obj)
    steps = host.store.history(name)
    if not steps:
        host.get(name)  # no such deployment: say so, listing the known ones
    if as_json:
        echo_json([s.to_dict() for s in steps])
        return
    for s in steps:
        move = f"v{s.from_version} -> v{s.version}" if s.from_version else f"v{s.version}"
        why = f": {s.reason}" if s.reason else ""
        click.echo(f"{s.ts}  {s.kind:<16} {move:<12} {s.status:<8} by {s.actor}{why}")


@deploy.command()
@click.argument("name")
@click.pass_obj
def start(obj: StewardContext, name: str) -> None:
    """Start a recorded deployment again (after a reboot or a crash of its gateway)."""
    _show(_host(obj).start(name), False)


@deploy.command()
@click.argument("name")
@click.pass_obj
def serve(obj: StewardContext, name: str) -> None:
    """Run NAME's gateway in the foreground (what a systemd unit runs)."""
    from mlflow_steward.deployment.onprem import gateway

    host = _host(obj)
    info = host.get(name)
    client = host.client(info.target)
    if not hasattr(client, "gateway_command"):
        raise DeploymentError(f"deployment {name!r} is on {info.target!r}, which has no gateway")
    sys.exit(gateway.run(info.name, client.context.registry_uri))


@deploy.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def targets(obj: StewardContext, as_json: bool) -> None:
    """Deployment targets and the plugins that provide them."""
    found = obj.pm.hooks.deployment_targets()
    if as_json:
        echo_json(
            [
                {
                    "name": n,
                    "kind": r.target.kind,
                    "plugin": r.plugin,
                    "options": [o.name for o in r.target.options],
                }
                for n, r in sorted(found.items())
            ]
        )
        return
    for name, registered in sorted(found.items()):
        click.echo(f"{name} ({registered.target.kind}) from {registered.plugin}")


@deploy.command("help")
@click.option("-t", "--target", required=True)
@click.pass_obj
def help_cmd(obj: StewardContext, target: str) -> None:
    """A target's help and every option it declares (type, default)."""
    from mlflow_steward.deployment.host import target_help

    registered = obj.pm.hooks.deployment_target(target)
    click.echo(target_help(registered, describe=obj.pm.hooks.describe_plugin(registered.plugin)))
