"""``steward``: the entry point. Keep imports here light: no MLflow, pandas or scikit-learn."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from typing import TYPE_CHECKING, Any

import click

from mlflow_steward import __version__
from mlflow_steward.errors import StewardError

if TYPE_CHECKING:
    from mlflow_steward.config import StewardConfig
    from mlflow_steward.plugins.manager import StewardPluginManager

#: name -> (module, attribute, short help). Imported only when the command runs.
BUILTIN_COMMANDS: dict[str, tuple[str, str, str]] = {
    "doctor": (
        "mlflow_steward.cli.doctor_cmd",
        "doctor",
        "Versions in use against the tested ranges.",
    ),
    "plugins": (
        "mlflow_steward.cli.plugins_cmd",
        "plugins",
        "List plugins, their hooks and what they provide.",
    ),
    "check": (
        "mlflow_steward.cli.lifecycle_cmd",
        "check",
        "Dry run: each policy's verdict on a move.",
    ),
    "promote": (
        "mlflow_steward.cli.lifecycle_cmd",
        "promote",
        "Move an alias (or legacy stage) to a version.",
    ),
    "rollback": (
        "mlflow_steward.cli.lifecycle_cmd",
        "rollback",
        "Move an alias back to its previous holder.",
    ),
    "history": (
        "mlflow_steward.cli.lifecycle_cmd",
        "history_cmd",
        "Where aliases and stages pointed over time.",
    ),
    "verify": (
        "mlflow_steward.cli.lifecycle_cmd",
        "verify",
        "Check a version's artifacts against the digest recorded at registration.",
    ),
    "approve": ("mlflow_steward.cli.approvals_cmd", "approve", "Approve a version for an alias."),
    "reject": ("mlflow_steward.cli.approvals_cmd", "reject", "Reject a version for an alias."),
    "approvals": (
        "mlflow_steward.cli.approvals_cmd",
        "approvals",
        "Request and list reviews of promotions.",
    ),
    "deploy": (
        "mlflow_steward.cli.deploy_cmd",
        "deploy",
        "Deploy versions to on-prem, cloud and edge targets.",
    ),
    "edge": (
        "mlflow_steward.cli.edge_cmd",
        "edge",
        "Build model bundles and publish them to TUF channels for edge agents.",
    ),
    "monitor": (
        "mlflow_steward.cli.monitor_cmd",
        "monitor",
        "Drift and data quality against a version's baseline.",
    ),
    "audit": ("mlflow_steward.cli.audit_cmd", "audit", "Read, verify and export the audit log."),
    "lineage": (
        "mlflow_steward.cli.lineage_cmd",
        "lineage",
        "Where a version came from, why it moved, where it runs.",
    ),
    "evidence": (
        "mlflow_steward.cli.evidence_cmd",
        "evidence",
        "What each governed promotion and deploy rested on (--verify).",
    ),
    "card": (
        "mlflow_steward.cli.card_cmd",
        "card",
        "A model card of a version (Markdown or HTML).",
    ),
    "config": ("mlflow_steward.cli.config_cmd", "config", "Check the configuration file."),
    "db": ("mlflow_steward.cli.db_cmd", "db", "Schema status and upgrades of steward's tables."),
    "quickstart": (
        "mlflow_steward.cli.quickstart",
        "quickstart",
        "Run the guided demo end to end.",
    ),
}


#: Errors whose message is written for users already; others get their type and a --debug hint.
_PLAIN_ERRORS = frozenset(
    {
        "PolicyDenied",
        "MlflowException",
        "RestException",
        "GovernanceUnavailable",
        "SchemaOutdated",
    }
)


class StewardContext:
    """Global options, and the plugin manager / configuration built on first use."""

    def __init__(
        self,
        config_path: str | None,
        registry_uri: str | None,
        disabled: tuple[str, ...],
        debug: bool,
    ) -> None:
        self.config_path = config_path
        self.registry_uri = registry_uri
        self.disabled = disabled
        self.debug = debug
        self._pm: StewardPluginManager | None = None
        self._config: StewardConfig | None = None

    @property
    def pm(self) -> Any:
        if self._pm is None:
            from mlflow_steward.plugins.manager import create_plugin_manager

            self._pm = create_plugin_manager(disable=self.disabled)
        return self._pm

    @property
    def config(self) -> Any:
        if self._config is None:
            from mlflow_steward.config import load_config

            self._config = load_config(self.config_path)
        return self._config

    def session(self) -> Any:
        from mlflow_steward.lifecycle.session import StewardSession

        return StewardSession(registry_uri=self.registry_uri, config=self.config, pm=self.pm)


#: Global options that may be given anywhere on the command line (``steward monitor check ...
#: --debug``): they are moved in front of the subcommand before click parses. ``--no-plugin``
#: takes a value.
_ANYWHERE_FLAGS = ("--debug",)
_ANYWHERE_OPTIONS = ("--no-plugin",)
_DISABLED_META = "mlflow_steward.disabled"


def hoist_global_options(args: list[str]) -> list[str]:
    """``args`` with ``--debug`` and ``--no-plugin NAME`` moved to the front, wherever they were
    (up to a ``--``, after which everything is an argument)."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg in _ANYWHERE_FLAGS or any(arg.startswith(f"{o}=") for o in _ANYWHERE_OPTIONS):
            front.append(arg)
        elif arg in _ANYWHERE_OPTIONS and i + 1 < len(args):
            front.extend(args[i : i + 2])
            i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


def _disabled_in(args: list[str]) -> tuple[str, ...]:
    """The ``--no-plugin`` values of a hoisted command line (they stand before the subcommand)."""
    out = []
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--no-plugin" and i + 1 < len(args):
            out.append(args[i + 1])
        elif arg.startswith("--no-plugin="):
            out.append(arg.partition("=")[2])
    return tuple(out)


def context_of(ctx: click.Context) -> StewardContext:
    """The command line's :class:`StewardContext`, built from the global options on first use
    (commands are resolved, and help is written, before the group's callback runs)."""
    root = ctx.find_root()
    if not isinstance(root.obj, StewardContext):
        params = root.params
        # `steward --help --no-plugin x`: --help is eager and runs before --no-plugin is
        # processed, so the values seen by parse_args stand in for it.
        disabled = params.get("disabled") or root.meta.get(_DISABLED_META, ())
        root.obj = StewardContext(
            params.get("config_path"),
            params.get("registry_uri"),
            tuple(disabled),
            bool(params.get("debug")),
        )
    return root.obj


def _plugin_message(obj: StewardContext | None, exc: BaseException) -> str | None:
    """``plugin 'acme' (distribution acme 1.0) failed: ...`` when a plugin's code raised."""
    if obj is None or obj._pm is None:
        return None
    who = obj.pm.plugin_in_traceback(exc)
    if who is None:
        return None
    message = getattr(exc, "message", None) or str(exc)
    if who in message:
        return None  # the message names the plugin already (a policy, a before-deploy hook)
    detail = message if isinstance(exc, StewardError) else f"{type(exc).__name__}: {message}"
    return f"plugin {who} failed: {detail} (run with --debug for the traceback)"


class LazyGroup(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.parent is None:
            args = hoist_global_options(list(args))
            ctx.meta[_DISABLED_META] = _disabled_in(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            obj = ctx.find_object(StewardContext)
            if (obj is not None and obj.debug) or os.environ.get("MLFLOW_STEWARD_DEBUG") == "1":
                raise
            named = _plugin_message(obj, exc)
            if named is not None:
                raise StewardCommandError(named) from exc
            message = getattr(exc, "message", None) or str(exc)
            if not isinstance(exc, StewardError) and type(exc).__name__ not in _PLAIN_ERRORS:
                message = f"{type(exc).__name__}: {message} (run with --debug for the traceback)"
            raise StewardCommandError(str(message)) from exc

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(BUILTIN_COMMANDS)
        with contextlib.suppress(StewardError):  # the error is shown when a command runs
            names |= set(context_of(ctx).pm.hooks.commands())
        return sorted(names)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in BUILTIN_COMMANDS:
            module, attr, _ = BUILTIN_COMMANDS[name]
            return getattr(importlib.import_module(module), attr)
        obj = context_of(ctx)
        registered = obj.pm.hooks.commands().get(name)
        if registered is None:
            return None
        who = obj.pm.hooks.describe_plugin(registered.plugin)
        try:
            command = registered.command.load()
        except Exception as exc:
            if obj.debug:
                raise
            raise StewardCommandError(
                f"plugin {who} failed to load its command {name!r}: "
                f"{type(exc).__name__}: {exc} (run with --debug for the traceback)"
            ) from exc
        if not isinstance(command, click.Command):
            raise StewardCommandError(
                f"plugin {who}: the load() of command {name!r} returned {command!r}, "
                "not a click.Command"
            )
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, short) for name, (_, _, short) in BUILTIN_COMMANDS.items()]
        extra = []
        try:
            obj = context_of(ctx)
            for name, registered in obj.pm.hooks.commands().items():
                who = obj.pm.hooks.describe_plugin(registered.plugin)
                if name in BUILTIN_COMMANDS:
                    extra.append((name, f"REFUSED: plugin {who} may not replace a built-in"))
                else:
                    extra.append((name, f"{registered.command.help} [{who}]".strip()))
        except StewardError as exc:
            extra = [("(plugins)", f"not loaded: {exc}")]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))
        if extra:
            with formatter.section("Plugin commands"):
                formatter.write_dl(sorted(extra))


def _check_shadowing(obj: StewardContext) -> None:
    from mlflow_steward.errors import PluginConflictError

    for name, registered in obj.pm.hooks.commands().items():
        if name in BUILTIN_COMMANDS:
            raise PluginConflictError(
                f"plugin {obj.pm.hooks.describe_plugin(registered.plugin)} provides command "
                f"{name!r}, which is a built-in steward command; plugin commands cannot replace "
                "built-ins (rename it, or skip the plugin with --no-plugin "
                f"{registered.plugin})"
            )


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="steward")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Configuration file (default: $MLFLOW_STEWARD_CONFIG, then ./steward.yaml).",
)
@click.option(
    "--registry-uri",
    help="Registry database (default: $MLFLOW_REGISTRY_URI, "
    "$MLFLOW_TRACKING_URI, or registry_uri: in the config).",
)
@click.option(
    "--no-plugin",
    "disabled",
    multiple=True,
    metavar="NAME",
    help="Do not load this plugin: its entry-point name, or builtin.<module> (repeatable, "
    "anywhere on the line); also MLFLOW_STEWARD_DISABLE_PLUGINS=a,b.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks (anywhere on the line).")
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: str | None,
    registry_uri: str | None,
    disabled: tuple[str, ...],
    debug: bool,
) -> None:
    """Governance, deployment and monitoring for MLflow models."""
    obj = context_of(ctx)
    if ctx.invoked_subcommand is not None:
        _check_shadowing(obj)


class StewardCommandError(click.ClickException):
    """Any failure of a command, shown as one ``Error: ...`` line with exit code 1."""


def main(argv: list[str] | None = None) -> None:
    """Console script ``steward``."""
    cli.main(args=argv, prog_name="steward")


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
