"""Lifecycle operations on one governed registry: check, promote, rollback, approve, history.

Every move goes through the governed store, so it is decided by the same policies and recorded on
the same audit log as any other client's.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from mlflow.exceptions import MlflowException

from mlflow_steward.config import StewardConfig, load_config
from mlflow_steward.errors import InvalidVersion, LifecycleError
from mlflow_steward.governance.facts import RegisteredVersionFacts, VersionFacts
from mlflow_steward.governance.governor import action_context
from mlflow_steward.governance.store import GovernedRegistryStore, build_governed_store
from mlflow_steward.plugins.events import (
    REVIEW_VERDICTS,
    REVIEWED_ACTIONS,
    ActionEvent,
    Decision,
)
from mlflow_steward.plugins.manager import StewardPluginManager, get_plugin_manager
from mlflow_steward.records import approvals, history
from mlflow_steward.registry import (
    ModelRef,
    canonical_version,
    governed_uri,
    parse_model_uri,
    resolve_registry_uri,
    tracking_uri_for,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

T = TypeVar("T")

#: The governed action each review verdict is.
REVIEW_ACTIONS = {"request": "request_approval", "approve": "approve", "reject": "reject"}


class StewardSession:
    def __init__(
        self,
        *,
        registry_uri: str | None = None,
        tracking_uri: str | None = None,
        config: StewardConfig | None = None,
        pm: StewardPluginManager | None = None,
    ) -> None:
        self.config = config if config is not None else load_config()
        self.pm = pm or get_plugin_manager()
        uri = resolve_registry_uri(registry_uri, self.config.registry_uri)
        self.registry_uri = governed_uri(uri)
        self.tracking_uri = tracking_uri or tracking_uri_for(self.registry_uri)
        self.store: GovernedRegistryStore = build_governed_store(
            self.registry_uri, self.tracking_uri, config=self.config, pm=self.pm
        )
        self.governor = self.store.governor
        self.audit = self.governor.audit

    # -- services (``mlflow_steward.plugins.StewardServices``) ---------------------------------

    @property
    def db_engine(self) -> Engine:
        """The engine on the registry database that holds steward's own tables."""
        return self.governor.db_engine

    def workspace(self) -> str:
        """The MLflow workspace the session acts in (``default`` without workspaces)."""
        return self.governor.workspace()

    def actor(self) -> str:
        """Who acts (the request's identity in the server, else ``MLFLOW_STEWARD_ACTOR``)."""
        return self.governor.actor()

    def version_event(
        self, action: str, model: str, version: str, context: Mapping[str, Any]
    ) -> ActionEvent:
        """The event of governed ``action`` on registered ``model`` ``version``, with the
        version's facts."""
        governor = self.governor
        return governor.event(
            action,
            model,
            version=version,
            facts=RegisteredVersionFacts(governor.ctx, model, version),
            context=context,
        )

    def governed(self, event: ActionEvent, write: Callable[[], T]) -> T:
        """Decide ``event`` under the model's write lock; on allow run ``write`` and audit it."""
        return self.governor.governed(event, write)

    def has_retrainer(self) -> bool:
        """Whether a plugin implements ``steward_retrain``."""
        return self.pm.hooks.has_retrainer()

    # -- resolving -----------------------------------------------------------------------------

    def version_of(self, ref: ModelRef) -> str:
        if ref.name is not None and ref.version:
            try:
                version = canonical_version(ref.version)
            except InvalidVersion as exc:
                raise LifecycleError(f"models:/{ref.name}/{ref.version}: {exc}") from None
            self._require_version(ref.name, version)
            return version
        if ref.name is not None and ref.alias:
            try:
                return str(self.store.get_model_version_by_alias(ref.name, ref.alias).version)
            except MlflowException as exc:
                raise LifecycleError(f"models:/{ref.name}@{ref.alias}: {exc.message}") from None
        raise LifecycleError(
            "name a registered version: models:/NAME/VERSION or models:/NAME@ALIAS"
        )

    def _require_version(self, name: str, version: str) -> Any:
        try:
            return self.store.get_model_version(name, version)
        except MlflowException as exc:
            raise LifecycleError(
                f"models:/{name}/{version} does not exist: {exc.message}"
            ) from None

    def registered(self, model_uri: str) -> tuple[str, str]:
        ref = parse_model_uri(model_uri)
        if ref.name is None:  # not ref.registered
            raise LifecycleError(f"{model_uri!r} is not a registered model version")
        return ref.name, self.version_of(ref)

    # -- operations ----------------------------------------------------------------------------

    def check(
        self,
        model_uri: str,
        *,
        action: str | None = None,
        alias: str | None = None,
        stage: str | None = None,
        name: str | None = None,
    ) -> Decision:
        """Each applicable policy's verdict, without writing anything. Without ``action``:
        ``transition_stage`` for a ``stage`` alone, else ``set_alias`` for a registered version
        and ``create_model_version`` for a model not registered yet (``set_alias`` with an
        alias)."""
        ref = parse_model_uri(model_uri)
        ctx = self.governor.ctx
        if action is None and stage and not alias:
            action = "transition_stage"
        if ref.name is not None:  # ref.registered
            action = action or "set_alias"
            version = self.version_of(ref)
            facts = VersionFacts.of_version(ctx, ref.name, version)
            event = self.governor.event(
                action, ref.name, version=version, alias=alias, stage=stage, facts=facts
            )
            return self.governor.decide(event)
        if not name:
            raise LifecycleError(
                f"{model_uri} is not registered yet: give the registered model "
                "name it would be registered under (name=...)"
            )
        source, run_id, model_id = self._unregistered_source(ref)
        facts = VersionFacts(
            ctx, name=name, version=None, source=source, run_id=run_id, model_id=model_id
        )
        event = self.governor.event(
            action or ("set_alias" if alias else "create_model_version"),
            name,
            alias=alias,
            stage=stage,
            facts=facts,
        )
        return self.governor.decide(event)

    def _unregistered_source(self, ref: ModelRef) -> tuple[str, str | None, str | None]:
        client = self.governor.ctx.client
        if ref.model_id:
            logged = client.get_logged_model(ref.model_id)
            return f"models:/{ref.model_id}", logged.source_run_id, ref.model_id
        run = client.get_run(ref.run_id)
        logged = client.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"source_run_id = '{ref.run_id}' AND name = '{ref.path}'",
        )
        if logged:
            return f"models:/{logged[0].model_id}", ref.run_id, logged[0].model_id
        return f"{run.info.artifact_uri.rstrip('/')}/{ref.path}", ref.run_id, None

    def promote(
        self,
        model_uri: str,
        *,
        alias: str | None = None,
        stage: str | None = None,
        archive_existing: bool = False,
    ) -> str:
        if bool(alias) == bool(stage):
            raise LifecycleError("promote to exactly one of --to ALIAS or --stage STAGE")
        name, version = self.registered(model_uri)
        if alias:
            self.store.set_registered_model_alias(name, alias, version)
        else:
            self.store.transition_model_version_stage(name, version, stage, archive_existing)
        return version

    def history(self, name: str, alias: str | None = None) -> list[history.HistoryEntry]:
        return history.history(self.governor.db_engine, name, alias, self.governor.workspace())

    def rollback(
        self,
        name: str,
        alias: str,
        *,
        to_version: str | None = None,
        load_check: bool = True,
        expect_current: str | None = None,
    ) -> tuple[str | None, str]:
        """Move ``alias`` back to the version that held it before; returns (from, to).

        The move applies only if the holder read here still holds the alias when the write
        happens (under the model's lock); with ``expect_current``, only if that version does."""
        current = self.store.holder_of(name, alias)
        if expect_current is not None and current != str(expect_current):
            raise LifecycleError(
                f"@{alias} on {name!r} is held by {current or 'nobody'}, not version "
                f"{expect_current}: not rolled back"
            )
        if to_version is not None:
            try:
                to_version = canonical_version(to_version)
            except InvalidVersion as exc:
                raise LifecycleError(f"--to-version: {exc}") from None
        target = to_version or history.rollback_target(self.history(name, alias), current)
        if target is None:
            raise LifecycleError(
                f"no earlier holder of @{alias} on {name!r} in steward's history "
                f"(current: {current or 'none'}); name one with --to-version"
            )
        if target == current:
            raise LifecycleError(f"version {target} already holds @{alias}")
        mv = self._require_version(name, target)
        if load_check:
            self._check_loads(name, target, mv.source)
        with action_context(rollback=True, rolled_back_from=current, expect_holder=current):
            self.store.set_registered_model_alias(name, alias, target)
        return current, target

    def _check_loads(self, name: str, version: str, source: str) -> None:
        import mlflow.pyfunc

        try:
            with tempfile.TemporaryDirectory() as tmp:
                local = self._download(source, tmp)
                mlflow.pyfunc.load_model(local)
        except Exception as exc:
            raise LifecycleError(
                f"version {version} of {name!r} no longer loads, so it is not a "
                f"safe rollback target: {type(exc).__name__}: {exc}"
            ) from None

    def _download(self, source: str, dst: str) -> str:
        import mlflow.artifacts

        return mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=dst, tracking_uri=self.tracking_uri
        )

    def review(
        self,
        model_uri: str,
        *,
        alias: str,
        verdict: str = "approve",
        comment: str = "",
        action: str = "set_alias",
    ) -> Decision:
        """Record a request for, an approval of, or a rejection of ``action`` (default: the
        version taking ``alias``; ``delete_alias``: the alias leaving it).

        A governed action (``request_approval``, ``approve``, ``reject``): policies decide whether
        the actor may do it (the ``approvals`` policy refuses reviews by requesters and by the run's
        author), and it is audited with the actor. The entry is bound to the registered model's
        identity and to the version's content digest as they are now: it does not count for a
        model created again under the name, nor for other artifacts.
        """
        if verdict not in REVIEW_VERDICTS:
            raise LifecycleError(f"unknown review {verdict!r}; use one of {REVIEW_VERDICTS}")
        if action not in REVIEWED_ACTIONS:
            raise LifecycleError(
                f"a review cannot be about {action!r}; use one of {', '.join(REVIEWED_ACTIONS)}"
            )
        name, version = self.registered(model_uri)
        facts = VersionFacts.of_version(self.governor.ctx, name, version)
        context: dict[str, Any] = {"review_action": action}
        if comment:
            context["comment"] = comment
        event = self.governor.event(
            REVIEW_ACTIONS[verdict],
            name,
            version=version,
            alias=alias,
            facts=facts,
            context=context,
        )
        # A governed action whose only write is steward's own row, in the audit transaction.
        _, decision = self.governor.apply(
            event,
            lambda: None,
            also=lambda conn, seq, _result: approvals.insert_approval(
                conn,
                model=name,
                version=version,
                alias=alias,
                approver=event.actor,
                comment=comment,
                audit_seq=seq,
                verdict=verdict,
                action=action,
                model_created=facts.model_created,
                # Approvals count for these artifacts only (hashed for the content-digest
                # policy's decision already); requests and rejections bind to the model.
                digest=facts.content_digest if verdict == "approve" else None,
                workspace=event.workspace,
            ),
            outside_audit=False,
        )
        return decision

    def verify(self, model_uri: str) -> dict[str, Any]:
        """Hash a registered version's artifacts again and compare with the digest recorded when
        it was registered: ``{name, version, recorded, current, changed, ok}``."""
        name, version = self.registered(model_uri)
        facts = VersionFacts.of_version(self.governor.ctx, name, version)
        recorded = facts.recorded_digest
        current = facts.content_digest
        changed = facts.changed_files() if recorded is not None else []
        return {
            "name": name,
            "version": version,
            "recorded": recorded,
            "current": current,
            "changed": changed,
            "ok": recorded is not None and recorded == current,
        }

    def reviews(self, model: str | None = None, since_seconds: float = 7 * 86400) -> list[Any]:
        """Review entries of the last ``since_seconds`` (default 7 days), oldest first."""
        return approvals.list_reviews(
            self.governor.db_engine,
            model=model,
            since=time.time() - since_seconds,
            workspace=self.governor.workspace(),
        )
