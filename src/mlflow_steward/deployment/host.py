"""The deployment host: one entry to every target, for ``steward deploy`` and ``mlflow deployments``.

For each step it resolves the target and the model (``models:/NAME@ALIAS`` becomes a version, and
the version is recorded), checks the options against the target's schema, asks governance
(``action: deploy``, with target name and kind; a refusal starts nothing and is audited), calls the
``steward_before_deploy`` hooks, lets the target's client do the work, and records the result on the
deployment's audited history in the registry database.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from mlflow_steward.config import StewardConfig
from mlflow_steward.errors import DeploymentError
from mlflow_steward.plugins.events import DEFAULT_WORKSPACE
from mlflow_steward.plugins.manager import RegisteredTarget, StewardPluginManager
from mlflow_steward.plugins.options import Option, OptionError, check, help_section
from mlflow_steward.plugins.targets import (
    DeploymentContext,
    DeploymentEvent,
    DeploymentInfo,
    Progress,
    ResolvedModel,
    TargetClient,
)
from mlflow_steward.records.deployments import DeploymentStore
from mlflow_steward.registry import inner_uri

if TYPE_CHECKING:
    from mlflow_steward.plugins.services import StewardServices

#: Options that cannot change on update: where the deployment listens and is controlled.
FIXED_OPTIONS = ("port", "host", "admin_host")

#: Options every deployment takes, whatever its target.
COMMON_OPTIONS: tuple[Option, ...] = (
    Option(
        "production",
        "bool",
        "a production deployment (policies such as deploy-requires-alias apply to it)",
        False,
    ),
)


def target_help(registered: RegisteredTarget, *, describe: str | None = None) -> str:
    """A target's help: its own text, then an options section generated from its declared
    options (and the options every deployment takes), the same for built-in and plugin targets."""
    target = registered.target
    head = f"{target.name} ({target.kind} target"
    head += f", from plugin {describe})" if describe else ")"
    return "\n".join(
        [
            head,
            "",
            target.help.strip(),
            "",
            help_section((*target.options, *COMMON_OPTIONS), flag="-C"),
        ]
    )


#: ``status()`` keys steward reads, with their types; others are passed through to --json.
_STATUS_KEYS: dict[str, tuple[type, ...]] = {
    "health": (dict,),
    "version": (str, int),
    "gateway": (str,),
    "traffic": (dict,),
    "requests": (int,),
    "errors": (int,),
    "error_rate": (int, float),
    "slots": (list,),
}


def check_status(live: Any, target: str, plugin: str) -> dict[str, Any]:
    """A target client's ``status()`` result checked against the documented shape: a mapping
    whose ``health`` is what ``health()`` returns (``{"healthy": bool, "detail": str}``, detail
    optional) and whose optional ``version``, ``gateway``, ``traffic`` ({version: percent}),
    ``requests``, ``errors``, ``error_rate`` and ``slots`` have the documented types. Raises a
    :class:`DeploymentError` naming the plugin otherwise."""

    def wrong(what: str, got: Any) -> DeploymentError:
        return DeploymentError(
            f"target {target!r} from plugin {plugin}: status() returned "
            f"{f'{what} = ' if what else ''}{got!r}; "
            "expected a mapping like {'health': {'healthy': True, 'detail': '...'}, ...} "
            "(see docs/hooks.md, status() and health())"
        )

    if not isinstance(live, Mapping):
        raise wrong("", live)
    out = dict(live)
    health = out.get("health", {"healthy": False, "detail": "status() reported no health"})
    if not isinstance(health, Mapping) or not isinstance(health.get("healthy"), bool):
        raise wrong("health", health)
    if "detail" in health and not isinstance(health["detail"], str):
        raise wrong("health.detail", health["detail"])
    out["health"] = {"detail": "", **health}
    for key, kinds in _STATUS_KEYS.items():
        if out.get(key) is not None and key != "health":
            value = out[key]
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise wrong(key, value)
    for version, percent in (out.get("traffic") or {}).items():
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise wrong(f"traffic[{version!r}]", percent)
    for slot in out.get("slots") or []:
        if not isinstance(slot, Mapping):
            raise wrong("slot", slot)
    return out


class DeploymentHost:
    """Deployments of one governed registry."""

    def __init__(
        self, session: StewardServices, *, progress: Progress | None = None, launch: bool = True
    ) -> None:
        self.launch = launch
        self.session = session
        self.pm: StewardPluginManager = session.pm
        self.config: StewardConfig = session.config
        self.store = DeploymentStore(session.db_engine, session.workspace())
        self.progress: Progress = progress or (lambda message: None)

    # -- targets -------------------------------------------------------------------------------

    def targets(self) -> dict[str, RegisteredTarget]:
        return self.pm.hooks.deployment_targets()

    def target(self, name: str) -> RegisteredTarget:
        return self.pm.hooks.deployment_target(name)

    def client(self, target: str, actor: str | None = None) -> TargetClient:
        registered = self.target(target)
        context = DeploymentContext(
            store=self.store,
            registry_uri=inner_uri(self.session.registry_uri),
            tracking_uri=self.session.tracking_uri,
            actor=actor or self.session.actor(),
            progress=self.progress,
            launch=self.launch,
        )
        return registered.target.client(registered.target, context)

    def options(
        self,
        name: str,
        target: str,
        given: Mapping[str, Any] | None,
        recorded: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, Any], str]:
        """The deployment's options: the ``recorded`` ones (an update), overridden by
        ``deployments.NAME`` in steward.yaml, overridden by ``given`` (``-C key=value``), checked
        against the target's schema; defaults filled in. ``production: true`` from the file or the
        record cannot be switched off from the command line. Returns the options and the target
        (``target:`` in the file may name it)."""
        configured = dict(self.config.deployments.get(name, {}))
        target = target or configured.get("target", "")
        if not target:
            raise DeploymentError(
                f"name a target for deployment {name!r} (-t TARGET, or `target:` under "
                f"deployments.{name} in steward.yaml)"
            )
        configured.pop("target", None)
        registered = self.target(target)
        declared = (*COMMON_OPTIONS, *registered.target.options)
        owner = f"target {target!r}"
        plugin = self.pm.hooks.plugin_of("steward_deployment_targets", target)
        out: dict[str, Any] = {}
        # Each layer through the one option checker (defaults only at the end): the record of an
        # update, then deployments.NAME of steward.yaml (errors name file, key and line), then
        # -C key=value (text, read for each option's kind).
        for source, values in (
            ("recorded", dict(recorded or {})),
            ("file", configured),
            ("cli", dict(given or {})),
        ):
            try:
                out.update(
                    check(values, declared, owner, plugin=plugin, text=source == "cli", fill=False)
                )
            except OptionError as exc:
                if source == "file":
                    raise self.config.error(
                        ("deployments", name, exc.key or ""), str(exc)
                    ) from None
                if exc.key is not None and exc.key in values and source == "cli":
                    raise DeploymentError(f"option {exc.key}={values[exc.key]!r}: {exc}") from None
                raise DeploymentError(str(exc)) from None
        for option in declared:
            if option.name not in out and option.required:
                raise DeploymentError(
                    f"target {target!r} needs option {option.name!r} ({option.help}); "
                    f"give it with -C {option.name}=..."
                )
        out = {**check({}, [o for o in declared if o.name not in out], owner), **out}
        marked = bool(configured.get("production")) or bool((recorded or {}).get("production"))
        if marked and not out["production"]:
            raise DeploymentError(
                f"deployment {name!r} is marked production (in steward.yaml or when it was "
                "created); -C production=false cannot unmark it: change steward.yaml, or delete "
                "the deployment and create it again"
            )
        return out, target

    # -- models --------------------------------------------------------------------------------

    def resolve(self, model_uri: str) -> ResolvedModel:
        from mlflow_steward.errors import LifecycleError, RegistryURIError
        from mlflow_steward.registry import parse_model_uri

        try:
            ref = parse_model_uri(model_uri)
        except RegistryURIError as exc:
            raise DeploymentError(str(exc)) from None
        if ref.name is None:  # not ref.registered
            raise DeploymentError(
                f"{model_uri!r} is not a registered model version: deployments serve registered "
                "versions (models:/NAME/VERSION or models:/NAME@ALIAS), so that governance and "
                "history can name them"
            )
        try:
            version = self.session.version_of(ref)
        except LifecycleError as exc:
            raise DeploymentError(f"unknown model {model_uri!r}: {exc}") from None
        return ResolvedModel(name=ref.name, version=version, requested=model_uri)

    # -- governed steps ------------------------------------------------------------------------

    def _govern(
        self,
        operation: str,
        name: str,
        target: RegisteredTarget,
        model: ResolvedModel,
        options: Mapping[str, Any],
        write: Callable[[], Any],
        facts: Mapping[str, Any] | None = None,
        **context: Any,
    ) -> DeploymentEvent:
        """Decide ``deploy`` under the model's write lock; on allow, run the before-deploy hooks
        and ``write`` (which reserves the state), all before any process starts. ``facts``:
        what the target measured of what it deploys (:meth:`TargetClient.prepare`); they
        cannot replace the host's own keys."""
        event = self.session.version_event(
            "deploy",
            model.name,
            model.version,
            {
                **(facts or {}),
                "deployment": name,
                "target": target.target.name,
                "target_kind": target.target.kind,
                "operation": operation,
                "requested": model.requested,
                "production": bool(options.get("production")),
                **context,
            },
        )
        step = DeploymentEvent(
            operation=operation,
            name=name,
            target=target.target.name,
            kind=target.target.kind,
            actor=event.actor,
            model=model,
            options=dict(options),
            traffic=context.get("traffic"),
        )

        def hooks_then_write() -> Any:
            self._before(step)
            return write()

        self.session.governed(event, hooks_then_write)
        return step

    def _before(self, step: DeploymentEvent) -> None:
        self.pm.hooks.before_deploy(event=step)

    def _run(
        self,
        step: DeploymentEvent,
        info: DeploymentInfo,
        work: Callable[[], DeploymentInfo],
        *,
        kind: str,
        from_version: str | None = None,
        on_failure: Mapping[str, Any] | None = None,
    ) -> DeploymentInfo:
        try:
            result = work()
        except Exception as exc:
            reason = (
                str(exc) if isinstance(exc, DeploymentError) else f"{type(exc).__name__}: {exc}"
            )
            current = self.store.get(info.name)
            if current is not None:
                self.store.record(
                    current,
                    kind=f"{kind}-failed",
                    actor=step.actor,
                    status="failed",
                    version=step.model.version if step.model else current.version,
                    from_version=from_version,
                    reason=reason,
                    decision="allowed",
                    row=on_failure,
                )
            self.pm.hooks.on_deploy_error(event=step, error=exc)
            if isinstance(exc, DeploymentError):
                raise
            raise DeploymentError(f"{kind} of deployment {info.name!r} failed: {reason}") from exc
        row = {
            "version": result.version,
            "status": result.status,
            "endpoint": result.endpoint,
            "traffic": result.traffic,
            "runtime": result.runtime,
            "reason": result.reason,
            "options": info.options,
        }
        if step.model is not None and kind != "canary":
            # What a plain `update` re-resolves: the URI of the version now served (after a
            # rollback, that version, not the URI that was rolled back from).
            row["requested"] = step.model.requested
            result.requested = step.model.requested
        self.store.record(
            result,
            kind=kind,
            actor=step.actor,
            status=result.status,
            version=step.model.version if step.model else result.version,
            from_version=from_version,
            reason=result.reason,
            decision="allowed",
            row=row,
        )
        self.pm.hooks.after_deploy(event=step, deployment=result)
        return result

    def create(
        self,
        name: str,
        model_uri: str,
        *,
        target: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> DeploymentInfo:
        options, target_name = self.options(name, target or "", config)
        registered = self.target(target_name)
        if self.store.get(name) is not None:
            raise DeploymentError(
                f"deployment {name!r} already exists (deployment names are unique across "
                "workspaces); use `update` to change it"
            )
        model = self.resolve(model_uri)
        client = self.client(target_name)
        client.validate(name, options)
        info = DeploymentInfo(
            name=name,
            target=target_name,
            kind=registered.target.kind,
            model=model.name,
            version=model.version,
            status="starting",
            requested=model_uri,
            options=options,
            traffic={model.version: 100},
            workspace=self.store.workspace or DEFAULT_WORKSPACE,
        )

        def reserve() -> None:
            with self.store.engine.begin() as conn:
                self.store.insert_row(conn, info)

        return self._governed_step(
            "create",
            info,
            model,
            lambda: client.create(info, model, None),
            client=client,
            kind="create",
            write=reserve,
            on_failure={"status": "failed"},
        )

    def update(
        self,
        name: str,
        model_uri: str | None = None,
        *,
        config: Mapping[str, Any] | None = None,
        traffic: int | None = None,
    ) -> DeploymentInfo:
        info = self.store.require(name)
        options, _ = self.options(name, info.target, config, recorded=info.options)
        moved = [k for k in FIXED_OPTIONS if k in info.options and options[k] != info.options[k]]
        if moved:
            raise DeploymentError(
                f"{', '.join(moved)} of deployment {name!r} cannot change on update (the gateway "
                "keeps its addresses); delete the deployment and create it again"
            )
        model = self.resolve(model_uri or info.requested or f"models:/{info.model}/{info.version}")
        if model.name != info.model:
            raise DeploymentError(
                f"deployment {name!r} serves model {info.model!r}; it cannot switch to "
                f"{model.name!r} (create another deployment)"
            )
        if traffic is not None and not 0 < traffic <= 100:
            raise DeploymentError(f"--traffic new={traffic}: give a percentage from 1 to 100")
        client = self.client(info.target)
        client.validate(name, options)
        info.options = options
        return self._governed_step(
            "update",
            info,
            model,
            lambda: client.update(info, model, traffic),
            client=client,
            kind="canary" if traffic is not None and traffic < 100 else "update",
            from_version=info.version,
            # Recorded before the target acts, so the rollout itself runs with them.
            write=lambda: self.store.update_row(None, name, options=options),
            traffic=traffic,
        )

    def rollback(self, name: str, *, to_version: str | None = None) -> DeploymentInfo:
        """Undo a canary, or serve the version served before (or ``to_version``)."""
        info = self.store.require(name)
        client = self.client(info.target)
        canary = [v for v in info.traffic if v != info.version]
        if canary and to_version is None:
            stable = ResolvedModel(info.model, info.version, f"models:/{info.model}/{info.version}")
            return self._governed_step(
                "rollback",
                info,
                stable,
                lambda: client.rollback(info, None),
                client=client,
                kind="rollback",
                from_version=canary[0],
                rollback=True,
                canary=canary[0],
            )
        previous = to_version or self.store.previous_version(name, info.version)
        if previous is None:
            raise DeploymentError(
                f"deployment {name!r} has served no other version than {info.version}; "
                "name one with --to-version"
            )
        model = self.resolve(f"models:/{info.model}/{previous}")
        served = {
            s.version for s in self.store.history(name, since_create=True) if s.status == "serving"
        }
        return self._governed_step(
            "rollback",
            info,
            model,
            lambda: client.rollback(info, model),
            client=client,
            kind="rollback",
            from_version=info.version,
            rollback=previous in served,
        )

    def promote_canary(self, name: str) -> DeploymentInfo:
        info = self.store.require(name)
        canary = [v for v in info.traffic if v != info.version]
        if not canary:
            raise DeploymentError(f"deployment {name!r} has no canary to promote")
        client = self.client(info.target)
        return self._governed_step(
            "promote_canary",
            info,
            self.resolve(f"models:/{info.model}/{canary[0]}"),
            lambda: client.promote_canary(info),
            client=client,
            kind="promote",
            from_version=info.version,
        )

    def _governed_step(
        self,
        operation: str,
        info: DeploymentInfo,
        model: ResolvedModel,
        work: Callable[[], DeploymentInfo],
        *,
        client: TargetClient,
        kind: str,
        from_version: str | None = None,
        write: Callable[[], Any] = lambda: None,
        on_failure: Mapping[str, Any] | None = None,
        **context: Any,
    ) -> DeploymentInfo:
        """Let the target prepare the step (:meth:`TargetClient.prepare`), decide it (``action:
        deploy``) with the facts it measured, then let the target work and record the result."""
        registered = self.target(info.target)
        with client.prepare(operation, info, model) as facts:
            step = self._govern(
                operation, info.name, registered, model, info.options, write, facts, **context
            )
            return self._run(
                step, info, work, kind=kind, from_version=from_version, on_failure=on_failure
            )

    def delete(self, name: str) -> None:
        info = self.store.require(name)
        client = self.client(info.target)
        actor = self.session.actor()
        step = DeploymentEvent("delete", name, info.target, info.kind, actor)
        self._before(step)
        try:
            client.delete(info)
        except Exception as exc:
            self.pm.hooks.on_deploy_error(event=step, error=exc)
            raise
        self.store.record(
            info, kind="delete", actor=actor, status="deleted", delete=True, decision="allowed"
        )
        self.pm.hooks.after_deploy(event=step, deployment=info)

    def start(self, name: str) -> DeploymentInfo:
        """Bring a recorded deployment back from its state (after a restart)."""
        info = self.store.require(name)
        actor = self.session.actor()
        result = self.client(info.target).start(info)
        self.store.record(
            result,
            kind="start",
            actor=actor,
            status=result.status,
            decision="allowed",
            row={"status": result.status, "reason": None},
        )
        return result

    # -- reading -------------------------------------------------------------------------------

    def get(self, name: str) -> DeploymentInfo:
        info = self.store.require(name)
        if info.target not in self.targets():
            return info  # its plugin is not installed here: show what is recorded
        return self.client(info.target).get(info)

    def list(self, target: str | None = None) -> list[DeploymentInfo]:
        if target is not None:
            self.target(target)
        recorded = self.store.list(target)
        out: list[DeploymentInfo] = []
        for name in sorted({info.target for info in recorded}):
            mine = [info for info in recorded if info.target == name]
            if name in self.targets():
                out.extend(self.client(name).list(mine))
            else:  # its plugin is not installed here: show what is recorded
                out.extend(mine)
        return sorted(out, key=lambda info: info.name)

    def predict(self, name: str, inputs: Any) -> Any:
        info = self.store.require(name)
        return self.client(info.target).predict(info, inputs)

    def status(self, name: str) -> dict[str, Any]:
        """The recorded deployment with ``live``: what the target's ``status()`` says, checked
        against the documented shape (docs/hooks.md, "status() and health()")."""
        info = self.store.require(name)
        live = self.client(info.target).status(info)
        who = self.pm.hooks.plugin_of("steward_deployment_targets", info.target)
        return {**info.to_dict(), "live": check_status(live, info.target, who)}
