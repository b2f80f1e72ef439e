"""The plugin manager: loads built-ins, third-party entry points and in-process plugins.

Load order (documented in docs/writing-plugins.md):

1. blocks: ``disable=`` / ``--no-plugin NAME`` and ``MLFLOW_STEWARD_DISABLE_PLUGINS=a,b`` are applied
   *before* anything is imported, so a blocked plugin is never imported;
2. built-in plugins (each built-in feature is a plugin module, see :data:`BUILTIN_PLUGINS`);
3. entry points in group ``mlflow_steward`` unless ``MLFLOW_STEWARD_DISABLE_PLUGIN_AUTOLOAD=1``
   (a plugin that fails to import stops the run with its distribution name: a silently skipped
   governance plugin is a policy that is not enforced);
4. in-process plugins passed as ``plugins=[...]`` (or, for the default manager, added with
   :func:`register_plugin`);
5. ``check_pending()``: an implementation of a hook that does not exist (a misspelt name) is an error.

Nothing is loaded at import time: :func:`create_plugin_manager` builds a fresh manager,
:func:`get_plugin_manager` caches the default one.
"""

from __future__ import annotations

import importlib
import logging
import os
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pluggy

from mlflow_steward import PROJECT_NAME
from mlflow_steward.env import DISABLE_AUTOLOAD_ENV, DISABLE_ENV
from mlflow_steward.errors import PluginConflictError, PluginLoadError
from mlflow_steward.plugins import hookspec
from mlflow_steward.plugins.types import (
    Alerter,
    CardSection,
    Command,
    DataSource,
    DeploymentTarget,
    Detector,
    MonitorAction,
    PluginInfo,
    Policy,
    as_tuple,
)

if TYPE_CHECKING:
    from mlflow_steward.plugins.events import ActionEvent, Decision
    from mlflow_steward.plugins.targets import DeploymentEvent, DeploymentInfo

_logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = PROJECT_NAME

#: Built-in plugins: (name, module). Blockable by name like any other plugin.
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("builtin.require_signature", "mlflow_steward.governance.policies.require_signature"),
    ("builtin.required_tags", "mlflow_steward.governance.policies.required_tags"),
    ("builtin.metric_threshold", "mlflow_steward.governance.policies.metric_threshold"),
    ("builtin.allowed_requirements", "mlflow_steward.governance.policies.allowed_requirements"),
    ("builtin.freeze_window", "mlflow_steward.governance.policies.freeze_window"),
    ("builtin.approvals", "mlflow_steward.governance.policies.approvals"),
    ("builtin.require_identity", "mlflow_steward.governance.policies.require_identity"),
    ("builtin.protect_aliases", "mlflow_steward.governance.policies.protect_aliases"),
    ("builtin.content_digest", "mlflow_steward.governance.policies.content_digest"),
    ("builtin.prompt_markers", "mlflow_steward.governance.policies.prompt_markers"),
    ("builtin.deploy_requires_alias", "mlflow_steward.governance.policies.deploy_requires_alias"),
    ("builtin.edge_bundle", "mlflow_steward.governance.policies.edge_bundle"),
    ("builtin.onprem", "mlflow_steward.deployment.onprem.plugin"),
    ("builtin.edge", "mlflow_steward.deployment.edge.plugin"),
    ("builtin.detectors", "mlflow_steward.monitoring.detectors"),
    ("builtin.data_sources", "mlflow_steward.monitoring.sources"),
    ("builtin.alerters", "mlflow_steward.monitoring.alerting"),
    ("builtin.monitor_actions", "mlflow_steward.monitoring.rules"),
    ("builtin.evidence", "mlflow_steward.lineage.evidence"),
)


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _env_list(var: str) -> list[str]:
    return [part.strip() for part in os.environ.get(var, "").split(",") if part.strip()]


_Item = TypeVar("_Item")


@dataclass(frozen=True)
class Registered(Generic[_Item]):
    """Anything a registration hook yielded (``item``), with the plugin that provided it."""

    item: _Item
    plugin: str


class RegisteredPolicy(Registered[Policy]):
    """A policy with the plugin that provided it."""

    @property
    def policy(self) -> Policy:
        return self.item


class RegisteredCommand(Registered[Command]):
    @property
    def command(self) -> Command:
        return self.item


class RegisteredTarget(Registered[DeploymentTarget]):
    @property
    def target(self) -> DeploymentTarget:
        return self.item


#: Every registration hook: (what ``steward plugins`` calls it, what an error calls one item,
#: the type the hook yields, the registration record).
REGISTRATION_HOOKS: dict[str, tuple[str, str, type[Any], type[Registered[Any]]]] = {
    "steward_policies": ("policies", "policy", Policy, RegisteredPolicy),
    "steward_commands": ("commands", "command", Command, RegisteredCommand),
    "steward_deployment_targets": (
        "deployment_targets",
        "deployment target",
        DeploymentTarget,
        RegisteredTarget,
    ),
    "steward_detectors": ("detectors", "detector", Detector, Registered),
    "steward_alerters": ("alerters", "alerter", Alerter, Registered),
    "steward_monitor_actions": ("monitor_actions", "monitor action", MonitorAction, Registered),
    "steward_data_sources": ("data_sources", "data source", DataSource, Registered),
}


class StewardPluginManager(pluggy.PluginManager):
    """A pluggy manager that also remembers where each plugin came from."""

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.add_hookspecs(hookspec)
        self._origins: dict[str, tuple[str | None, str | None, bool]] = {}
        self.hooks = StewardHooks(self)

    def register_plugin(
        self,
        plugin: object,
        name: str,
        *,
        distribution: str | None = None,
        version: str | None = None,
        builtin: bool = False,
    ) -> None:
        try:
            self.register(plugin, name=name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            who = f"distribution {distribution!r}" if distribution else f"plugin {name!r}"
            raise PluginLoadError(f"{who} could not be registered: {exc}") from exc
        self._origins[name] = (distribution, version, builtin)
        wrapped = [
            caller.name
            for caller in self.get_hookcallers(plugin) or ()
            for impl in caller.get_hookimpls()
            if impl.plugin is plugin and (impl.hookwrapper or impl.wrapper)
        ]
        if wrapped:
            described = self.hooks.describe_plugin(name)
            self.unregister(plugin)
            del self._origins[name]
            raise PluginLoadError(
                f"plugin {described} implements {', '.join(sorted(wrapped))} with "
                "@hookimpl(wrapper=True) or @hookimpl(hookwrapper=True); steward calls each "
                "implementation of its hooks itself and never runs wrappers, so they are refused: "
                "use a plain @hookimpl (see docs/hooks.md)"
            )

    def origin(self, name: str) -> tuple[str | None, str | None, bool]:
        """(distribution, version, built-in) of the plugin registered as ``name``."""
        return self._origins.get(name, (None, None, False))

    def plugin_in_traceback(self, exc: BaseException) -> str | None:
        """The third-party or in-process plugin whose code raised ``exc`` (the deepest frame of
        the exception, or of its causes, in the plugin's package), described for a message;
        ``None`` when no plugin's code is in the traceback. Built-ins are steward's own code."""
        packages: dict[str, str] = {}
        for name, plugin in self.list_name_plugin():
            dist, _, builtin = self.origin(name)
            if plugin is None or builtin:
                continue
            if isinstance(plugin, type | types.ModuleType):
                module = plugin.__module__ if isinstance(plugin, type) else plugin.__name__
            else:
                module = type(plugin).__module__
            packages[module.partition(".")[0] if dist else module] = name
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            found = None
            tb = current.__traceback__
            while tb is not None:
                module = tb.tb_frame.f_globals.get("__name__", "")
                for package, name in packages.items():
                    if module == package or module.startswith(f"{package}."):
                        found = name
                tb = tb.tb_next
            if found is not None:
                return self.hooks.describe_plugin(found)
            current = current.__cause__ or current.__context__
        return None

    def plugin_infos(self) -> list[PluginInfo]:
        infos = []
        for name, plugin in self.list_name_plugin():
            if plugin is None:  # blocked
                continue
            dist, version, builtin = self.origin(name)
            hooks = tuple(sorted(h.name for h in self.get_hookcallers(plugin) or ()))
            provides = {
                key: tuple(sorted(self.hooks.provided_by(hook, name)))
                for hook, (key, *_) in REGISTRATION_HOOKS.items()
            }
            infos.append(
                PluginInfo(
                    name=name,
                    distribution=dist,
                    version=version,
                    builtin=builtin,
                    hooks=hooks,
                    provides={k: v for k, v in provides.items() if v},
                )
            )
        return infos


class StewardHooks:
    """Typed façade over the hooks: the only code that calls ``pm.hook.*``."""

    def __init__(self, pm: StewardPluginManager) -> None:
        self._pm = pm
        self._found: dict[str, dict[str, Registered[Any]]] = {}

    def registered(self, hook_name: str) -> dict[str, Registered[Any]]:
        """What the plugins yielded from registration hook ``hook_name``, by name, each with its
        plugin (cached). Raises :class:`PluginLoadError` for an item of the wrong type and
        :class:`PluginConflictError` when two plugins use one name."""
        if hook_name in self._found:
            return self._found[hook_name]
        _, kind, cls, record = REGISTRATION_HOOKS[hook_name]
        found: dict[str, list[str]] = {}
        out: dict[str, Registered[Any]] = {}
        for plugin_name, items in self._each_guarded(hook_name):
            for item in as_tuple(items):
                if not isinstance(item, cls):
                    raise PluginLoadError(
                        f"plugin {self._describe(plugin_name)} yielded {item!r} from {hook_name}(); "
                        f"expected {cls.__name__} objects"
                    )
                found.setdefault(item.name, []).append(plugin_name)
                out.setdefault(item.name, record(item, plugin_name))
        for name, providers in found.items():
            if len(providers) > 1:
                who = " and ".join(self._describe(p) for p in providers)
                raise PluginConflictError(
                    f"{kind} name {name!r} is provided by {who}; "
                    f"disable one with --no-plugin or {DISABLE_ENV}"
                )
        self._found[hook_name] = out
        return out

    def _items(self, hook_name: str) -> dict[str, Any]:
        return {n: r.item for n, r in self.registered(hook_name).items()}

    def plugin_of(self, hook_name: str, name: str) -> str:
        """``'acme' (distribution acme 1.0)``: the plugin that registered ``name`` through
        ``hook_name``, as error messages name it."""
        return self._describe(self.registered(hook_name)[name].plugin)

    def _each_guarded(self, hook_name: str) -> Iterable[tuple[str, Any]]:
        caller = getattr(self._pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):
            try:
                yield impl.plugin_name, impl.function()
            except Exception as exc:
                raise PluginLoadError(
                    f"plugin {self._describe(impl.plugin_name)} failed in {hook_name}(): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc

    def is_builtin(self, plugin_name: str) -> bool:
        """Whether ``plugin_name`` is one of steward's own plugins (registered as built-in)."""
        return self._pm.origin(plugin_name)[2]

    def _describe(self, plugin_name: str) -> str:
        dist, version, builtin = self._pm.origin(plugin_name)
        if dist:
            return f"{plugin_name!r} (distribution {dist} {version})"
        return f"{plugin_name!r}" + (" (built-in)" if builtin else "")

    def policies(self) -> dict[str, RegisteredPolicy]:
        """Every policy by name. Raises :class:`PluginConflictError` on duplicate names."""
        return self.registered("steward_policies")  # type: ignore[return-value]

    def commands(self) -> dict[str, RegisteredCommand]:
        return self.registered("steward_commands")  # type: ignore[return-value]

    def deployment_targets(self) -> dict[str, RegisteredTarget]:
        """Every deployment target by name. Raises :class:`PluginConflictError` on duplicates."""
        return self.registered("steward_deployment_targets")  # type: ignore[return-value]

    def detectors(self) -> dict[str, Detector]:
        """Every drift detector by name (:class:`PluginConflictError` on duplicates)."""
        return self._items("steward_detectors")

    def alerters(self) -> dict[str, Alerter]:
        """Every alert channel by name."""
        return self._items("steward_alerters")

    def monitor_actions(self) -> dict[str, MonitorAction]:
        """Every monitor rule action by name."""
        return self._items("steward_monitor_actions")

    def data_sources(self) -> dict[str, DataSource]:
        """Every monitoring data source by name."""
        return self._items("steward_data_sources")

    def deployment_target(self, name: str) -> RegisteredTarget:
        """The target named ``name``; unknown names list the available ones."""
        import difflib

        from mlflow_steward.errors import DeploymentError

        targets = self.deployment_targets()
        if name not in targets:
            close = difflib.get_close_matches(name, list(targets), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DeploymentError(
                f"unknown deployment target {name!r}{hint}; available targets: "
                + (", ".join(sorted(targets)) or "none (no plugin provides one)")
            )
        return targets[name]

    def provided_by(self, hook_name: str, plugin_name: str) -> list[str]:
        """Names registered through ``hook_name`` by plugin ``plugin_name``."""
        return [n for n, r in self.registered(hook_name).items() if r.plugin == plugin_name]

    def describe_plugin(self, plugin_name: str) -> str:
        return self._describe(plugin_name)

    def resolve_actor(self, *, default: str) -> str:
        result = self._pm.hook.steward_resolve_actor(default=default)
        return result if result else default

    def _observe(self, hook_name: str, **kwargs: Any) -> None:
        caller = getattr(self._pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):
            try:
                impl.function(**{k: kwargs[k] for k in impl.argnames})
            except Exception:
                _logger.exception(
                    "plugin %s failed in %s() (ignored: observers are isolated)",
                    self._describe(impl.plugin_name),
                    hook_name,
                )

    def card_sections(
        self, *, model: str, version: str, lineage: Mapping[str, Any]
    ) -> list[tuple[str, CardSection]]:
        """Every plugin's extra model-card sections, each with the plugin's description. An
        exception or a wrong item raises :class:`PluginLoadError` naming the plugin."""
        caller = self._pm.hook.steward_card_sections
        kwargs = {"model": model, "version": version, "lineage": lineage}
        out: list[tuple[str, CardSection]] = []
        for impl in reversed(caller.get_hookimpls()):
            who = self._describe(impl.plugin_name)
            try:
                items = as_tuple(impl.function(**{k: kwargs[k] for k in impl.argnames}))  # type: ignore[arg-type]
            except Exception as exc:
                raise PluginLoadError(
                    f"plugin {who} failed in steward_card_sections(): {type(exc).__name__}: {exc}"
                ) from exc
            for item in items:
                if not isinstance(item, CardSection):
                    raise PluginLoadError(
                        f"plugin {who} yielded {item!r} from steward_card_sections(); expected "
                        "CardSection objects"
                    )
                out.append((who, item))
        return out

    def after_decision(self, *, event: ActionEvent, decision: Decision) -> None:
        self._observe("steward_after_decision", event=event, decision=decision)

    def on_policy_error(self, *, policy: str, event: ActionEvent, error: BaseException) -> None:
        self._observe("steward_on_policy_error", policy=policy, event=event, error=error)

    def before_deploy(self, *, event: DeploymentEvent) -> None:
        """Not isolated: a plugin that raises stops the step with a :class:`DeploymentError`
        naming it, after the ``steward_on_deploy_error`` observers have seen the error."""
        from mlflow_steward.errors import DeploymentError

        caller = self._pm.hook.steward_before_deploy
        for impl in reversed(caller.get_hookimpls()):
            try:
                impl.function(**{k: {"event": event}[k] for k in impl.argnames})
            except Exception as exc:
                self.on_deploy_error(event=event, error=exc)
                raise DeploymentError(
                    f"{event.operation} of deployment {event.name!r} stopped by plugin "
                    f"{self._describe(impl.plugin_name)}: {type(exc).__name__}: {exc}"
                ) from exc

    def after_deploy(self, *, event: DeploymentEvent, deployment: DeploymentInfo) -> None:
        self._observe("steward_after_deploy", event=event, deployment=deployment)

    def on_deploy_error(self, *, event: DeploymentEvent, error: BaseException) -> None:
        self._observe("steward_on_deploy_error", event=event, error=error)

    def has_retrainer(self) -> bool:
        """Whether a plugin implements ``steward_retrain``."""
        return bool(self._pm.hook.steward_retrain.get_hookimpls())

    def retrain(self, *, context: Any, params: Any) -> str | None:
        """The first plugin's answer to ``steward_retrain``; ``None`` when no plugin retrains."""
        answer: str | None = self._pm.hook.steward_retrain(context=context, params=params)
        return answer


def _load_entry_points(pm: StewardPluginManager) -> None:
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if pm.is_blocked(ep.name) or pm.get_plugin(ep.name) is not None:
            continue
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist is not None else ep.name
        version = dist.version if dist is not None else None
        if _canonical(dist_name) != _canonical(ep.name):
            raise PluginLoadError(
                f"distribution {dist_name!r} declares entry point {ep.name!r} in group "
                f"{ENTRY_POINT_GROUP!r}; the entry point name must be the distribution name"
            )
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginLoadError(
                f"plugin distribution {dist_name!r} {version} failed to import "
                f"({ep.name} = {ep.value}): {type(exc).__name__}: {exc}. "
                f"Fix or uninstall it, or skip it with `steward --no-plugin {ep.name} ...` or "
                f"{DISABLE_ENV}={ep.name} (its policies are then not enforced)"
            ) from exc
        pm.register_plugin(plugin, ep.name, distribution=dist_name, version=version)


def create_plugin_manager(
    *,
    plugins: Iterable[object] = (),
    disable: Iterable[str] = (),
    autoload: bool | None = None,
    builtins: bool = True,
) -> StewardPluginManager:
    """Build a fresh, fully loaded plugin manager.

    Args:
        plugins: in-process plugin objects (modules, classes or instances with ``@hookimpl``
            methods), registered after the entry points. A team can keep a policy in its training
            repository this way.
        disable: plugin names to block before anything is imported (built-ins are named
            ``builtin.<module>``, third-party plugins by their distribution name).
        autoload: load third-party entry points; ``None`` means "unless
            ``MLFLOW_STEWARD_DISABLE_PLUGIN_AUTOLOAD=1``".
        builtins: register the built-in plugins.
    """
    pm = StewardPluginManager()
    for name in [*disable, *_env_list(DISABLE_ENV)]:
        pm.set_blocked(name)
    if builtins:
        for name, module in BUILTIN_PLUGINS:
            if not pm.is_blocked(name):
                pm.register_plugin(importlib.import_module(module), name, builtin=True)
    if autoload is None:
        autoload = os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() not in {
            "1",
            "true",
            "yes",
        }
    if autoload:
        _load_entry_points(pm)
    for plugin in plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        if pm.get_plugin(name) is not None:
            name = f"{name}-{id(plugin):x}"
        if not pm.is_blocked(name):
            pm.register_plugin(plugin, name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginLoadError(
            f"plugin {pm.hooks.describe_plugin(pm.get_name(exc.plugin) or '?')}: {exc}. "
            "Hook names start with 'steward_'; see docs/hooks.md"
        ) from exc
    for hook_name in ("steward_policies", "steward_commands", "steward_deployment_targets"):
        pm.hooks.registered(hook_name)
    return pm


_default: StewardPluginManager | None = None
_in_process: list[object] = []


def get_plugin_manager() -> StewardPluginManager:
    """The cached default manager (built on first use), with the plugins of :func:`register_plugin`."""
    global _default
    if _default is None:
        _default = create_plugin_manager(plugins=_in_process)
    return _default


def register_plugin(plugin: object) -> None:
    """Add an in-process plugin to the default manager of this process.

    Every governed registry store of the process (``mlflow.register_model``, ``MlflowClient``)
    consults it from its next action on: a team can keep a policy in its training repository.
    Loading errors (a misspelt hook, a duplicate policy name) are raised here.
    """
    global _default
    candidate = create_plugin_manager(plugins=[*_in_process, plugin])
    _in_process.append(plugin)
    _default = candidate


def in_process_plugins() -> list[object]:
    """The plugins added with :func:`register_plugin` in this process, in order."""
    return list(_in_process)


def reset_plugin_manager() -> None:
    """Forget the cached default manager and the plugins added with :func:`register_plugin`."""
    global _default
    _default = None
    _in_process.clear()
