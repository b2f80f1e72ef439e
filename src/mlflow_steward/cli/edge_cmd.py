"""``steward edge``: bundles, TUF channels and their keys for the edge target.

Imports stay light here: python-tuf, MLflow and pandas are imported inside the commands.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click


@click.group()
def edge() -> None:
    """Build model bundles and publish them to TUF channels that edge agents read.

    A channel is a TUF repository in a folder (served over HTTP or a file share) or under an S3
    prefix (s3://bucket/prefix, with boto3: the s3 extra): its metadata is signed by root and
    targets keys kept offline and by snapshot and timestamp keys kept online, each with an
    expiry. Needs the edge extra: pip install 'mlflow-steward[edge]'.
    """


def _progress(message: str) -> None:
    click.echo(f"  {message}", err=True)


_onnx_option = click.option(
    "--onnx",
    is_flag=True,
    help="Add the scikit-learn model converted to ONNX, with a parity check against the "
    "original on the baseline sample (needs the edge-onnx extra).",
)
_parity_tolerance_option = click.option(
    "--parity-tolerance",
    type=click.FloatRange(min=0),
    default=1e-5,
    show_default=True,
    help="Largest difference, relative to max(1, |value|), between the ONNX model's outputs "
    "and the original's (the parity check, run at build and again before a bundle is "
    "published).",
)


@edge.command()
@click.argument("model_uri")
@click.option(
    "-o",
    "--output",
    default=".",
    show_default=True,
    help="The bundle file (ending in .tar.gz or .tgz), or else a folder for "
    "<name>-<version>.tar.gz.",
)
@_onnx_option
@_parity_tolerance_option
@click.option(
    "--wheels",
    is_flag=True,
    help="Add the wheels of the pinned requirements and their dependencies (pip download), "
    "for an offline install on the device: steward edge install-deps.",
)
@click.option(
    "--wheels-platform",
    "platforms",
    multiple=True,
    metavar="TAG",
    help="With --wheels: the devices' platform tag, as pip download --platform takes it "
    "(e.g. manylinux2014_aarch64; repeat for several). Default: this machine's.",
)
@click.option(
    "--wheels-python-version",
    "python_version",
    default=None,
    metavar="X.Y",
    help="With --wheels: the devices' Python version (default: this one's).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.pass_context
def build(
    ctx: click.Context,
    model_uri: str,
    output: str,
    onnx: bool,
    parity_tolerance: float,
    wheels: bool,
    platforms: tuple[str, ...],
    python_version: str | None,
    as_json: bool,
) -> None:
    """Build the bundle of MODEL_URI (models:/NAME@ALIAS or models:/NAME/VERSION).

    One archive with the MLflow model, its pinned requirements, the version's content digest
    (checked against the digest recorded at registration), the input example, the baseline's
    column summaries and a manifest. Governed: policies decide `deploy` with target
    steward-edge, kind edge, operation build, with the bundle's size (wheels included), ONNX
    and wheels facts, before anything is written to OUTPUT.
    """
    from mlflow_steward.cli.main import context_of, echo_json
    from mlflow_steward.deployment.edge.governed import governed_build

    if (platforms or python_version) and not wheels:
        raise click.UsageError("--wheels-platform and --wheels-python-version need --wheels")
    built = governed_build(
        context_of(ctx).session(),
        model_uri,
        output,
        progress=_progress,
        onnx=onnx,
        parity_tolerance=parity_tolerance,
        wheels=wheels,
        platforms=platforms,
        python_version=python_version,
    )
    if as_json:
        echo_json({"path": str(built.path), **built.manifest})
        return
    click.echo(
        f"{built.path}: {built.model} v{built.version} ({built.digest}), "
        f"{len(built.manifest['files'])} files"
    )


@edge.command("install-deps")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--python",
    "python",
    default=None,
    help="The Python whose environment gets the packages (default: the one steward runs in, "
    "where the agent loads models).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was installed as JSON.")
def install_deps(bundle: str, python: str | None, as_json: bool) -> None:
    """Install BUNDLE's pinned requirements from the wheels it carries (built with --wheels),
    with no package index: pip install --no-index --find-links. The bundle is checked against
    its manifest first."""
    from mlflow_steward.cli.main import echo_json
    from mlflow_steward.deployment.edge.bundle import install_wheels

    entry = install_wheels(bundle, python)
    if as_json:
        echo_json(entry)
        return
    click.echo(f"installed {bundle}'s requirements from its {len(entry['files'])} wheels")


def _expiry(values: tuple[str, ...]) -> dict[str, int]:
    from mlflow_steward.plugins.options import parse_duration

    out = {}
    for item in values:
        role, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError("use ROLE=DURATION, e.g. timestamp=1d")
            out[role.strip()] = int(parse_duration(value))
        except ValueError as exc:
            raise click.BadParameter(f"{item!r}: {exc}", param_hint="--expiry") from None
    return out


_channel_option = click.option(
    "--channel", required=True, help="The channel: a folder or s3://bucket/prefix."
)
_keys_option = click.option(
    "--keys",
    type=click.Path(file_okay=False),
    help="The folder of the signing keys (<role>-<n>.pem) this step needs; keys in "
    "STEWARD_EDGE_KEY_<ROLE> (or STEWARD_EDGE_KEY_<ROLE>_<n>) variables sign too.",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _device_options(state_help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A device's --channel, --trusted-root and --state-dir (``pull`` and ``agent``)."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(
            (
                click.option(
                    "--channel",
                    required=True,
                    help="The channel: http(s)://, s3://bucket/prefix, file:// or a folder.",
                ),
                click.option(
                    "--trusted-root",
                    required=True,
                    type=click.Path(dir_okay=False, exists=True),
                    help="The channel's root metadata this device trusts (metadata/1.root.json).",
                ),
                click.option(
                    "--state-dir", required=True, type=click.Path(file_okay=False), help=state_help
                ),
            )
        ):
            command = option(command)
        return command

    return decorate


_lock_wait_option = click.option(
    "--lock-wait",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for another writer's lock on the channel.",
)


@edge.group()
def channel() -> None:
    """Create, refresh and show channels (TUF repositories in a folder)."""


@channel.command("init")
@_channel_option
@click.option(
    "--keys",
    required=True,
    type=click.Path(file_okay=False),
    help="The folder the new keys are written to (<role>-<n>.pem, mode 0600).",
)
@click.option("--root-keys", default=1, show_default=True, help="How many root keys.")
@click.option(
    "--root-threshold",
    default=1,
    show_default=True,
    help="How many root keys must sign a new root.",
)
@click.option(
    "--expiry",
    multiple=True,
    metavar="ROLE=DURATION",
    help="How long a role's metadata stays valid (defaults: root=365d, targets=90d, "
    "snapshot=7d, timestamp=1d).",
)
@click.option(
    "--trusted-root-out",
    type=click.Path(dir_okay=False),
    help="Also write a copy of the first root here (the file devices trust).",
)
@_lock_wait_option
@_json_option
def channel_init(
    channel: str,
    keys: str,
    root_keys: int,
    root_threshold: int,
    expiry: tuple[str, ...],
    trusted_root_out: str | None,
    lock_wait: float,
    as_json: bool,
) -> None:
    """Create a channel: new keys in --keys, signed root, targets, snapshot and timestamp.

    Devices trust the channel through its first root (metadata/1.root.json, given to the
    agent with --trusted-root). Keep the root and targets keys offline.
    """
    from mlflow_steward.cli.main import echo_json
    from mlflow_steward.deployment.edge.channel import Channel

    target = Channel(channel, keys, lock_wait=lock_wait)
    result = target.init(root_keys=root_keys, root_threshold=root_threshold, expiry=_expiry(expiry))
    if trusted_root_out:
        from pathlib import Path

        Path(trusted_root_out).write_bytes(target.storage.read("metadata/1.root.json"))
        result["trusted_root"] = trusted_root_out
    if as_json:
        echo_json(result)
    else:
        click.echo(
            f"channel {result['channel']} created; keys in {result['keys']}; "
            f"devices trust {result['trusted_root']}"
        )


@channel.command("refresh")
@_channel_option
@_keys_option
@_lock_wait_option
@_json_option
def channel_refresh(channel: str, keys: str | None, lock_wait: float, as_json: bool) -> None:
    """Sign snapshot and timestamp again with new expiries (needs the online keys). Run it
    more often than the timestamp expires: devices refuse an expired one as a frozen channel."""
    from mlflow_steward.cli.main import echo_json
    from mlflow_steward.deployment.edge.channel import Channel

    result = Channel(channel, keys, lock_wait=lock_wait).refresh()
    if as_json:
        echo_json(result)
    else:
        click.echo(f"timestamp v{result['timestamp']}, valid until {result['expires']}")


@channel.command("show")
@_channel_option
@_json_option
def channel_show(channel: str, as_json: bool) -> None:
    """The channel's releases, oldest first; the last one is what devices install."""
    from mlflow_steward.cli.main import echo_json
    from mlflow_steward.deployment.edge.channel import Channel

    releases = Channel(channel).releases()
    if as_json:
        echo_json([r.to_dict() for r in releases])
        return
    if not releases:
        click.echo("nothing published")
    for r in releases:
        click.echo(f"release {r.release}: {r.model} v{r.version} ({r.length} bytes) {r.path}")


@channel.command("unlock")
@_channel_option
@_json_option
def channel_unlock(channel: str, as_json: bool) -> None:
    """Break the lock a dead publisher left on an S3 channel (a folder's lock ends with the
    process that holds it). Only when no publish, refresh or rotation is running."""
    from mlflow_steward.cli.main import echo_json
    from mlflow_steward.deployment.edge.channel import Channel

    holder = Channel(channel).unlock()
    if as_json:
        echo_json({"unlocked": holder is not None, "holder": holder})
    elif holder is None:
        click.echo(f"{channel} was not locked")
    else:
        click.echo(f"lock of {holder.get('owner')} (since {holder.get('since')}) broken")


@edge.command()
@click.argument("source")
@_channel_option
@_keys_option
@click.option("--production", is_flag=True, help="A production release (policies may ask more).")
@click.option(
    "--rollout",
    metavar="STEPS",
    help="Stage the release: the share of devices at each step, e.g. 10%,50%,100% (the last "
    "is 100%). Needs --step-wait and --max-failure-rate.",
)
@click.option("--step-wait", metavar="DURATION", help="How long each step lasts, e.g. 10m.")
@click.option(
    "--max-failure-rate",
    metavar="RATE",
    help="The share of failed installs at which the rollout halts, e.g. 5%.",
)
@_onnx_option
@_parity_tolerance_option
@_lock_wait_option
@_json_option
@click.pass_context
def publish(
    ctx: click.Context,
    source: str,
    channel: str,
    keys: str | None,
    production: bool,
    rollout: str | None,
    step_wait: str | None,
    max_failure_rate: str | None,
    onnx: bool,
    parity_tolerance: float,
    lock_wait: float,
    as_json: bool,
) -> None:
    """Publish SOURCE (a bundle file, or models:/NAME@ALIAS to build one) to a channel.

    The bundle becomes the channel's newest release: targets, snapshot and timestamp are signed
    again (needs the targets, snapshot and timestamp keys), atomically for readers. Governed:
    policies decide `deploy` (target steward-edge, kind edge, operation publish) on facts
    steward measures from the bundle, never on its manifest's word: its size, its files
    against their SHA-256s, the model's content digest against the registry's, and the ONNX
    parity check run again. A bundle that is not what its manifest says is refused.

    With --rollout the release is staged: its plan is signed with it, and each device decides
    from a hash of its id whether the current step includes it (the others stay on the release
    they run).
    """
    from mlflow_steward.cli.main import context_of, echo_json
    from mlflow_steward.deployment.edge.governed import governed_publish
    from mlflow_steward.deployment.edge.rollout import parse_plan

    plan = None
    if rollout is not None:
        if step_wait is None or max_failure_rate is None:
            raise click.UsageError("--rollout needs --step-wait and --max-failure-rate")
        plan = parse_plan(rollout, step_wait, max_failure_rate)
    elif step_wait is not None or max_failure_rate is not None:
        raise click.UsageError("--step-wait and --max-failure-rate go with --rollout")
    release = governed_publish(
        context_of(ctx).session(),
        source,
        channel,
        keys,
        progress=_progress,
        lock_wait=lock_wait,
        rollout=plan,
        production=production,
        onnx=onnx,
        parity_tolerance=parity_tolerance,
    )
    if as_json:
        echo_json(release.to_dict())
    else:
        click.echo(f"published {release.model} v{release.version} as release {release.release}")


@edge.group()
def keys() -> None:
    """Rotate a channel's signing keys."""


@keys.command("rotate")
@_channel_option
@click.option(
    "--keys",
    required=True,
    type=click.Path(file_okay=False),
    help="The folder the new keys are written to, and the old ones moved from; the keys that "
    "sign may also be in STEWARD_EDGE_KEY_<ROLE>[_<n>] variables.",
)
@click.option(
    "--role",
    required=True,
    type=click.Choice(["root", "targets", "snapshot", "timestamp"]),
    help="The role whose keys are replaced.",
)
@_lock_wait_option
@_json_option
def keys_rotate(channel: str, keys: str, role: str, lock_wait: float, as_json: bool) -> None:
    """Replace a role's keys: a new root (signed by the current root keys, and by the new ones
    for root itself) names the new keys; the old key files move to <keys>/retired/."""
    from mlflow_steward.cli.main import echo_json
    from mlflow_steward.deployment.edge.channel import Channel

    result = Channel(channel, keys, lock_wait=lock_wait).rotate(role)
    if as_json:
        echo_json(result)
    else:
        click.echo(
            f"{role}: {len(result['new_keys'])} new key(s), root v{result['root_version']}; "
            f"retired {', '.join(k[:12] for k in result['retired_keys'])}"
        )


@edge.command()
@_device_options("Where the device keeps the trusted metadata and downloads.")
@_json_option
def pull(channel: str, trusted_root: str, state_dir: str, as_json: bool) -> None:
    """Check a channel as a device does and download its current bundle, verified by TUF.

    Exit 1 with the reason when the channel's metadata or the bundle is refused (a changed
    byte, a wrong key, a rollback, an expired timestamp...); exit 2 when it is unreachable.
    """
    from mlflow_steward.cli.main import echo_json
    from mlflow_steward.deployment.edge.reader import (
        ChannelReader,
        ChannelRefused,
        ChannelUnreachable,
    )

    try:
        fetched = ChannelReader(channel, trusted_root, state_dir).fetch()
    except ChannelRefused as exc:
        if as_json:
            echo_json({"ok": False, "refused": exc.reason, "error": str(exc)})
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(1) from None
    except ChannelUnreachable as exc:
        if as_json:
            echo_json({"ok": False, "unreachable": True, "error": str(exc)})
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(2) from None
    if fetched is None:
        if as_json:
            echo_json({"ok": True, "release": None})
        else:
            click.echo("nothing published")
        return
    if as_json:
        echo_json({"ok": True, "release": fetched.release.to_dict(), "path": str(fetched.path)})
    else:
        r = fetched.release
        click.echo(f"release {r.release}: {r.model} v{r.version} at {fetched.path}")


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


@edge.command()
@click.option(
    "--uploads",
    required=True,
    help="Where the devices upload: a folder, file:// or s3://bucket/prefix.",
)
@_json_option
def status(uploads: str, as_json: bool) -> None:
    """The devices that report to --uploads, by group: model version, health, last contact."""
    import time
    from datetime import UTC, datetime

    from mlflow_steward.cli.main import echo_json
    from mlflow_steward.deployment.edge.stats import read_devices

    devices = read_devices(uploads)
    if as_json:
        echo_json(devices)
        return
    if not devices:
        click.echo(f"no device has reported to {uploads}")
    groups: dict[str | None, list[dict]] = {}
    for d in devices:
        groups.setdefault(d.get("group"), []).append(d)
    now = time.time()
    for group, members in groups.items():
        click.echo(f"{group or '(no group)'}: {len(members)} device{'s' * (len(members) != 1)}")
        for d in members:
            if "error" in d:
                click.echo(f"  {d['device']}  unreadable report: {d['error']}")
                continue
            version = (
                f"{d['model']} v{d.get('version')}" if d.get("model") else f"v{d.get('version')}"
            )
            line = f"  {d['device']}  {version}  {d.get('health', 'unknown')}"
            contact = d.get("last_contact")
            if isinstance(contact, int | float):
                line += "  last contact " + datetime.fromtimestamp(contact, UTC).strftime(
                    "%Y-%m-%d %H:%M:%S UTC"
                )
                if now >= contact:
                    line += f" ({_ago(now - contact)})"
            click.echo(line)


@edge.command()
@_device_options(
    "The device's folder: installs, trusted metadata, status and events (one agent each)."
)
@click.option("--port", required=True, type=click.IntRange(1, 65535), help="Port to serve on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option("--group", default=None, help="The device group this device reports.")
@click.option(
    "--device-id", default=None, help="This device's id (default: made once, kept in the state)."
)
@click.option(
    "--interval", default="30s", show_default=True, help="How often to check the channel."
)
@click.option(
    "--jitter",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0, 1, max_open=True),
    help="Each wait is the interval times 1 +- this fraction, drawn at random.",
)
@click.option(
    "--statistics/--no-statistics",
    default=True,
    show_default=True,
    help="Keep per-column sketches of the inputs per time window (never the rows).",
)
@click.option(
    "--uploads",
    default=None,
    help="Where the statistics and the device's reports go: a folder, file:// or "
    "s3://bucket/prefix (default: kept in the state folder).",
)
@click.option(
    "--stats-window", default="5m", show_default=True, help="The statistics' time window."
)
@click.option(
    "--spool-cap",
    default=64,
    show_default=True,
    type=click.IntRange(0),
    help="MiB of closed windows kept while --uploads is unreachable (oldest dropped, counted).",
)
def agent(
    channel: str,
    trusted_root: str,
    state_dir: str,
    port: int,
    host: str,
    group: str | None,
    device_id: str | None,
    interval: str,
    jitter: float,
    statistics: bool,
    uploads: str | None,
    stats_window: str,
    spool_cap: int,
) -> None:
    """Serve the installed model and follow a channel, until SIGTERM.

    Serves MLflow's scoring protocol (POST /invocations, GET /ping) and GET /status. Checks the
    channel every --interval through TUF's updater; a newer release is downloaded, installed
    into a new folder and health-checked on the model's input example, and served only when
    healthy (requests in flight finish on the old model). Anything refused is recorded in
    /status and <state-dir>/events.jsonl while the installed version keeps serving.
    """
    # A device serves offline: MLflow's usage telemetry would only wait, at every exit, on a
    # network the device may not have. Off unless the operator sets the variable.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow_steward.deployment.edge.agent import run_agent
    from mlflow_steward.plugins.options import parse_duration

    try:
        seconds = parse_duration(interval)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--interval") from None
    try:
        window = parse_duration(stats_window)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--stats-window") from None
    raise SystemExit(
        run_agent(
            channel=channel,
            trusted_root=trusted_root,
            state_dir=state_dir,
            port=port,
            host=host,
            group=group,
            device_id=device_id,
            interval=seconds,
            jitter=jitter,
            statistics=statistics,
            uploads=uploads,
            window_seconds=window,
            spool_cap_bytes=spool_cap << 20,
        )
    )


@edge.group()
def rollout() -> None:
    """Follow staged rollouts (publish --rollout) and halt a failing one."""


_uploads_option = click.option(
    "--uploads",
    required=True,
    help="Where the devices upload their reports: a folder, file:// or s3://bucket/prefix.",
)


def _rollout_lines(state: object) -> list[str]:
    from mlflow_steward.deployment.edge.rollout import RolloutState

    assert isinstance(state, RolloutState)
    rate = "n/a" if state.failure_rate is None else f"{state.failure_rate:.0%}"
    lines = [
        f"release {state.release} ({state.model} v{state.version}): step {state.step + 1}/"
        f"{len(state.steps)} ({state.steps[state.step]}%), {state.included} of {state.devices} "
        f"reporting devices included, {state.on} on it, {len(state.failed)} failing; failure "
        f"rate {rate} (halts over {state.max_failure_rate:.0%}): {state.verdict}"
        + (f" by release {state.halted_by}" if state.halted_by is not None else "")
    ]
    if state.failed:
        lines.append(f"  failing: {', '.join(state.failed)}")
    return lines


def _echo_rollout(state: object) -> None:
    for line in _rollout_lines(state):
        click.echo(line)


@rollout.command("status")
@_channel_option
@_uploads_option
@_json_option
def rollout_status(channel: str, uploads: str, as_json: bool) -> None:
    """The channel's staged rollout: step, devices included, failure rate, verdict."""
    from mlflow_steward.cli.main import echo_json
    from mlflow_steward.deployment.edge.governed import read_rollout

    state = read_rollout(channel, uploads)
    if as_json:
        echo_json(state.to_dict() if state is not None else None)
    elif state is None:
        click.echo(f"no staged rollout on {channel}")
    else:
        _echo_rollout(state)


@rollout.command("check")
@_channel_option
@_uploads_option
@_keys_option
@_lock_wait_option
@_json_option
@click.pass_context
def rollout_check(
    ctx: click.Context,
    channel: str,
    uploads: str,
    keys: str | None,
    lock_wait: float,
    as_json: bool,
) -> None:
    """Halt the staged rollout when its failure rate is over its --max-failure-rate; else
    record in the audit log a step it reached since the last check.

    The failure rate is the share of the devices that run the release or failed installing it
    that report failing. Halting publishes the previous release again, with no plan and marked
    as halting the staged one: the devices the rollout reached go back to it, the others stay.
    Governed: policies decide `deploy` (operation halt) on the version that goes back out.
    """
    from mlflow_steward.cli.main import context_of, echo_json
    from mlflow_steward.deployment.edge.governed import check_rollout

    state, halt, step = check_rollout(
        context_of(ctx).session(), channel, uploads, keys, lock_wait=lock_wait
    )
    if as_json:
        echo_json(
            {
                "rollout": state.to_dict() if state is not None else None,
                "halted_by": halt.to_dict() if halt is not None else None,
                "step_recorded": step.seq if step is not None else None,
            }
        )
        return
    for line in _check_lines(channel, state, halt, step):
        click.echo(line)


def _check_lines(channel: str, state: Any, halt: Any, step: Any) -> list[str]:
    """What ``rollout check`` prints of one check's result."""
    if state is None:
        return [f"no staged rollout on {channel}"]
    lines = _rollout_lines(state)
    if step is not None:
        lines.append(f"recorded step {state.step + 1} in the audit log (#{step.seq})")
    if halt is not None:
        lines.append(
            f"halted: published {halt.model} v{halt.version} again as release {halt.release}"
        )
    return lines


@rollout.command("watch")
@_channel_option
@_uploads_option
@_keys_option
@click.option(
    "--every",
    required=True,
    help="How often to check (e.g. 1m): well under the plan's --step-wait.",
)
@click.option(
    "--max-runs",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this many checks (default: until SIGTERM or Ctrl-C).",
)
@_lock_wait_option
@click.pass_context
def rollout_watch(
    ctx: click.Context,
    channel: str,
    uploads: str,
    keys: str | None,
    every: str,
    max_runs: int | None,
    lock_wait: float,
) -> None:
    """Run `rollout check` every --every until SIGTERM or Ctrl-C (or --max-runs checks).

    Each check prints its result with the time (UTC). A check that fails (the channel or the
    uploads unreachable, a policy refusing the halt) prints one error line to stderr and the
    watch goes on; the next check decides afresh. Exits 0 when stopped, or after --max-runs
    checks when the last one succeeded (1 when it failed).
    """
    import signal
    import threading
    from datetime import UTC, datetime

    from mlflow_steward.cli.main import context_of
    from mlflow_steward.deployment.edge.channel import Channel
    from mlflow_steward.deployment.edge.governed import watch_rollout
    from mlflow_steward.deployment.edge.stats import destination
    from mlflow_steward.plugins.options import parse_duration

    try:
        seconds = parse_duration(every)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--every") from None
    if not seconds > 0:
        raise click.BadParameter("the interval must be more than 0", param_hint="--every")
    Channel(channel)  # a malformed --channel is an error now, not at every check
    try:
        destination(uploads)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--uploads") from None
    session = context_of(ctx).session()
    stop = threading.Event()

    def stopped(signum: int, _frame: Any) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stopped)

    def stamp() -> str:
        return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def report(state: Any, halt: Any, step: Any) -> None:
        for line in _check_lines(channel, state, halt, step):
            click.echo(f"{stamp()} {line}")

    def failed(message: str) -> None:
        click.echo(f"{stamp()} check failed: {message}", err=True)

    click.echo(f"{stamp()} watching {channel} every {every} (Ctrl-C or SIGTERM stops)")
    ok = watch_rollout(
        session,
        channel,
        uploads,
        keys,
        every=seconds,
        report=report,
        failed=failed,
        stop=stop,
        max_runs=max_runs,
        lock_wait=lock_wait,
    )
    click.echo(f"{stamp()} stopped")
    if not ok and not stop.is_set():
        raise SystemExit(1)
