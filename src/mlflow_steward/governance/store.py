"""The governed registry store behind ``steward+<inner>://`` registry URIs.

It wraps MLflow's own store for ``<inner>`` and puts every registry write through the policy engine
*before* the write: a refusal is a :class:`PolicyDenied` (``PERMISSION_DENIED``) and nothing is
written. Reads go straight to the inner store. Prompt methods are inherited from MLflow's
``AbstractStore``, whose defaults call the registry methods below, so they are governed too.

``tests/test_store_surface.py`` fails when the installed MLflow adds a store method this module does
not classify, so a new write path cannot slip past governance unnoticed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import ABORTED, INVALID_PARAMETER_VALUE

from mlflow_steward import _mlflow_adapter, compat
from mlflow_steward.errors import InvalidVersion, RegistryURIError
from mlflow_steward.governance import manifests
from mlflow_steward.governance.facts import (
    RegisteredVersionFacts,
    VersionFacts,
    _tags_dict,
    model_id_of,
)
from mlflow_steward.governance.governor import (
    GovernanceUnavailable,
    Governor,
    current_action_context,
)
from mlflow_steward.governance.policies.prompt_markers import MARKERS
from mlflow_steward.plugins.events import ALIASES_HELD, DIGEST_TAG, Decision, FactUnavailable
from mlflow_steward.records import db, history
from mlflow_steward.registry import (
    STEWARD_PREFIX,
    alias_holder,
    canonical_version,
    inner_uri,
    is_prompt_marker,
    marks_prompt,
    not_found,
    quote_name,
)

if TYPE_CHECKING:
    from mlflow.store.model_registry.abstract_store import AbstractStore as _AbstractStore

    from mlflow_steward.config import StewardConfig
    from mlflow_steward.plugins.manager import StewardPluginManager
else:
    _AbstractStore = _mlflow_adapter.abstract_registry_store()

RESERVED_TAG_PREFIX = "steward."

#: Methods delegated unchanged: they read.
READ_METHODS = (
    "get_registered_model",
    "search_registered_models",
    "get_latest_versions",
    "get_model_version",
    "get_model_version_download_uri",
    "search_model_versions",
    "get_model_version_by_alias",
    "get_webhook",
    "list_webhooks",
    "list_webhooks_by_event",
)
#: Methods that write and are governed here.
GOVERNED_METHODS = (
    "create_registered_model",
    "update_registered_model",
    "rename_registered_model",
    "delete_registered_model",
    "set_registered_model_tag",
    "delete_registered_model_tag",
    "create_model_version",
    "update_model_version",
    "transition_model_version_stage",
    "delete_model_version",
    "set_model_version_tag",
    "delete_model_version_tag",
    "set_registered_model_alias",
    "delete_registered_model_alias",
    # A webhook sends registry events (names, versions, tags) to a URL of its creator's choice,
    # and a test sends a request there from the server: each is a governed, audited action.
    "create_webhook",
    "update_webhook",
    "delete_webhook",
    "test_webhook",
)


class GovernedRegistryStore(_AbstractStore):
    def __init__(
        self, store_uri: str, tracking_uri: str | None, inner: Any, governor: Governor
    ) -> None:
        super().__init__(store_uri=store_uri, tracking_uri=tracking_uri)
        self.store_uri = store_uri
        self.inner = inner
        self.governor = governor
        # MLflow's SQL store: its writes join steward's audit transaction (atomic write + entry).
        self._join = inner if _mlflow_adapter.can_join_sessions(inner) else None
        if self._join is not None:
            _mlflow_adapter.install_session_joining(inner)

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes the class does not define (e.g. the inner store's
        # `engine`); registry methods are all defined explicitly above.
        if name.startswith("__") or name in ("inner", "governor", "_join"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    # -- helpers ------------------------------------------------------------------------------

    def _governed(self, event: Any, write: Any, **kwargs: Any) -> Any:
        return self.governor.governed(event, write, join=self._join, **kwargs)

    @staticmethod
    def _version(version: Any) -> tuple[str, dict[str, str]]:
        """The canonical version (as MLflow's store reads it: see ``canonical_version``), and the
        event context recording the spelling the client sent when it differs."""
        try:
            canonical = canonical_version(version)
        except InvalidVersion as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        raw = str(version)
        return canonical, ({} if raw == canonical else {"raw_version": raw})

    def _facts(self, name: str, version: str) -> VersionFacts:
        # Read lazily: a version nobody's policy looks at is not read at all; one that does not
        # exist is a fact a policy cannot have, so a policy that needs it refuses (fail closed)
        # and otherwise MLflow's write answers RESOURCE_DOES_NOT_EXIST.
        return RegisteredVersionFacts(self.governor.ctx, name, str(version))

    def _guard_reserved(self, action: str, name: str, key: str, version: str | None = None) -> None:
        if _is_reserved(key):
            event = self.governor.event(action, name, version=version, tag_key=key)
            raise self.governor.refuse(
                event,
                "reserved-tags",
                f"tags starting with {RESERVED_TAG_PREFIX!r} are written only by steward itself",
            )

    @contextlib.contextmanager
    def _reading_to_decide(self, action: str, name: str) -> Iterator[None]:
        """Registry reads a write makes before its decision: a database that does not answer
        refuses the write with 403, as the decision itself would (fail closed), instead of
        MLflow's 503 (which clients retry seven times)."""
        try:
            yield
        except MlflowException as exc:
            if exc.error_code not in ("TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR"):
                raise
            raise GovernanceUnavailable(self.governor.event(action, name), exc) from exc
        except Exception as exc:
            import sqlalchemy.exc

            if not isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
                raise
            raise GovernanceUnavailable(self.governor.event(action, name), exc) from exc

    def _exists(self, name: str) -> bool:
        try:
            with self._reading_to_decide("create_registered_model", name):
                self.inner.get_registered_model(name)
            return True
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise

    def holder_of(self, name: str, alias: str) -> str | None:
        """The version holding ``alias`` on ``name``, or ``None``."""
        return alias_holder(self.inner, name, alias)

    # -- registered models --------------------------------------------------------------------

    def create_registered_model(self, name, tags=None, description=None, deployment_job_id=None):
        kwargs = {"deployment_job_id": deployment_job_id} if deployment_job_id else {}
        if self._exists(name):
            # Nothing can be written: let MLflow raise RESOURCE_ALREADY_EXISTS, which
            # mlflow.register_model expects for a model that already exists.
            return self.inner.create_registered_model(name, tags, description, **kwargs)
        tag_map = _tags_dict(tags)
        for key in tag_map:
            self._guard_reserved("create_registered_model", name, key)
        is_prompt = marks_prompt(tag_map)  # as MLflow's create_prompt marks a new prompt
        event = self.governor.event(
            "create_registered_model", name, context={"is_prompt": is_prompt} if is_prompt else {}
        )
        return self._governed(
            event, lambda: self.inner.create_registered_model(name, tags, description, **kwargs)
        )

    def update_registered_model(self, name, description, deployment_job_id=None):
        event = self.governor.event("update_registered_model", name)
        kwargs = {"deployment_job_id": deployment_job_id} if deployment_job_id else {}
        return self._governed(
            event, lambda: self.inner.update_registered_model(name, description, **kwargs)
        )

    def _model_aliases(self, name: str, action: str) -> dict[str, str]:
        """{alias: version} held by a registered model (empty when it does not exist), read to
        decide ``action``."""
        try:
            with self._reading_to_decide(action, name):
                aliases = self.inner.get_registered_model(name).aliases or {}
        except MlflowException as exc:
            if not_found(exc):
                return {}
            raise
        if not isinstance(aliases, dict):  # some MLflow entities list RegisteredModelAlias
            aliases = {a.alias: a.version for a in aliases}
        return {str(k): str(v) for k, v in aliases.items()}

    def rename_registered_model(self, name, new_name):
        event = self.governor.event(
            "rename_registered_model",
            name,
            new_name=new_name,
            context={ALIASES_HELD: self._model_aliases(name, "rename_registered_model")},
        )
        return self._governed(
            event,
            lambda: self.inner.rename_registered_model(name, new_name),
            also=lambda conn, _seq, _r: history.rename_model(conn, name, new_name, event.workspace),
        )

    def delete_registered_model(self, name):
        event = self.governor.event(
            "delete_registered_model",
            name,
            context={ALIASES_HELD: self._model_aliases(name, "delete_registered_model")},
        )
        return self._governed(event, lambda: self.inner.delete_registered_model(name))

    def set_registered_model_tag(self, name, tag):
        self._guard_reserved("set_registered_model_tag", name, tag.key)
        event = self.governor.event(
            "set_registered_model_tag", name, tag_key=tag.key, tag_value=tag.value
        )
        return self._governed(event, lambda: self.inner.set_registered_model_tag(name, tag))

    def delete_registered_model_tag(self, name, key):
        self._guard_reserved("delete_registered_model_tag", name, key)
        event = self.governor.event("delete_registered_model_tag", name, tag_key=key)
        return self._governed(event, lambda: self.inner.delete_registered_model_tag(name, key))

    # -- model versions -----------------------------------------------------------------------

    def create_model_version(
        self,
        name,
        source,
        run_id=None,
        tags=None,
        run_link=None,
        description=None,
        local_model_path=None,
        model_id=None,
    ):
        tag_map = _tags_dict(tags)
        copied = self._copied_reserved_tags(source, tag_map)
        if copied:
            # MLflow's copy_model_version sends the source version's tags along: steward's own
            # (written by steward on the source) are dropped, not written by the client; the
            # copy gets its own digest below.
            tag_map = {k: v for k, v in tag_map.items() if k not in copied}
        for key in tag_map:
            self._guard_reserved("create_model_version", name, key)
        facts = VersionFacts(
            self.governor.ctx,
            name=name,
            version=None,
            source=source,
            run_id=run_id,
            model_id=model_id_of(model_id, source),
            tags=tag_map,
            local_model_path=local_model_path,
        )
        context: dict[str, Any] = {"source": source, "run_id": run_id}
        markers = sorted(k for k in tag_map if is_prompt_marker(k))
        if markers:
            context[MARKERS] = markers
        event = self.governor.event("create_model_version", name, facts=facts, context=context)
        recorded: list[Any] = []

        def write():
            written = [_version_tag(k, v) for k, v in tag_map.items()]
            if not event.is_prompt:  # a prompt's source is a placeholder, not artifacts
                # Hashed already by the content-digest policy's decision; where a configuration
                # keeps that policy away from this model, artifacts that cannot be read leave
                # the version without a digest (as one registered before 0.2).
                try:
                    recorded.append(facts._content)
                except FactUnavailable:
                    pass
                else:
                    if self._join is None:  # else written with the manifest, below
                        written.append(_version_tag(DIGEST_TAG, recorded[0].digest))
            return self.inner.create_model_version(
                name,
                source,
                run_id=run_id,
                tags=written,
                run_link=run_link,
                description=description,
                local_model_path=local_model_path,
                model_id=model_id,
            )

        def keep_manifest(conn, _seq, mv):
            if recorded:
                manifests.record(conn, recorded[0])
                if self._join is not None:  # MLflow's SQL store: one statement, same transaction
                    _mlflow_adapter.insert_version_tag(
                        self.inner, conn, name, str(mv.version), DIGEST_TAG, recorded[0].digest
                    )

        try:
            return self._governed(
                event, write, version_of=lambda mv: str(mv.version), also=keep_manifest
            )
        except MlflowException as exc:
            if exc.error_code == "PERMISSION_DENIED":
                self._remove_empty_model(event)
            raise

    def _copied_reserved_tags(self, source: str, tag_map: Mapping[str, str]) -> set[str]:
        """The reserved tags of a ``models:/NAME/VERSION`` copy that the source version carries
        with the same values (all of them, or none: any other reserved tag is refused)."""
        reserved = {k: v for k, v in tag_map.items() if _is_reserved(k)}
        if not reserved or not str(source).startswith("models:/"):
            return set()
        name, _, version = str(source)[len("models:/") :].strip("/").rpartition("/")
        try:
            found = _version_tags(self.governor.ctx, name, canonical_version(version))
        except Exception:  # not a version, or unreadable: nothing is dropped, the guard refuses
            return set()
        if found is None or any(found.get(k) != v for k, v in reserved.items()):
            return set()
        return set(reserved)

    def _remove_empty_model(self, event) -> None:
        """Undo the registered model ``mlflow.register_model`` created for a refused first version.

        Only when steward's own log shows the model was just created by the same actor, nothing
        else happened to it since, and it holds no version: then the refused registration leaves
        the registry as it found it.
        """
        name = event.model
        entries = self.governor.audit.entries(
            model=name, limit=2, newest_first=True, workspace=event.workspace
        )
        if len(entries) < 2:
            return
        refused, created = entries
        if not (
            refused.action == "create_model_version"
            and refused.decision == "refused"
            and created.action == "create_registered_model"
            and created.outcome == "applied"
            and created.actor == event.actor
        ):
            return
        if self.inner.search_model_versions(f"name = '{quote_name(name)}'", max_results=1):
            return
        cleanup = self.governor.event(
            "delete_registered_model",
            name,
            actor=event.actor,
            context={"reason": "its first version was refused"},
        )
        decision = Decision(cleanup, ())  # steward's own undo: no policy to ask
        try:
            self.inner.delete_registered_model(name)
        except MlflowException as exc:
            self.governor.record(cleanup, decision, f"failed: {exc}")
            return
        self.governor.record(cleanup, decision, "applied")

    def _await_model_version_creation(self, mv, await_creation_for):
        # Called by MLflow's registry client after create_model_version: the inner store knows
        # whether its versions can be pending (MLflow's SQL store: never, so no wait is logged).
        _mlflow_adapter.await_model_version_creation(self.inner, mv, await_creation_for)

    def update_model_version(self, name, version, description):
        version, raw = self._version(version)
        event = self.governor.event("update_model_version", name, version=version, context=raw)
        return self._governed(
            event, lambda: self.inner.update_model_version(name, version, description)
        )

    def delete_model_version(self, name, version):
        version, raw = self._version(version)
        held = {
            alias: version
            for alias, holder in self._model_aliases(name, "delete_model_version").items()
            if holder == version
        }
        event = self.governor.event(
            "delete_model_version",
            name,
            version=version,
            facts=self._facts(name, version),
            context={ALIASES_HELD: held, **raw},
        )
        return self._governed(event, lambda: self.inner.delete_model_version(name, version))

    def set_model_version_tag(self, name, version, tag):
        version, raw = self._version(version)
        self._guard_reserved("set_model_version_tag", name, tag.key, version)
        event = self.governor.event(
            "set_model_version_tag",
            name,
            version=version,
            tag_key=tag.key,
            tag_value=tag.value,
            facts=self._facts(name, version),
            context=raw,
        )
        return self._governed(event, lambda: self.inner.set_model_version_tag(name, version, tag))

    def set_steward_tag(self, name: str, version: str, key: str, value: str, *, actor: str) -> None:
        """Write a tag in steward's reserved namespace (monitoring status, ...) as steward's own
        ``actor``: a governed, audited ``set_model_version_tag`` that clients cannot make."""
        if not key.startswith(RESERVED_TAG_PREFIX):
            raise ValueError(f"{key!r} is not a steward.* tag")
        version = canonical_version(version)
        event = self.governor.event(
            "set_model_version_tag",
            name,
            version=str(version),
            tag_key=key,
            tag_value=value,
            facts=self._facts(name, version),
            actor=actor,
        )
        self._governed(
            event,
            lambda: self.inner.set_model_version_tag(name, version, _version_tag(key, value)),
        )

    def delete_model_version_tag(self, name, version, key):
        version, raw = self._version(version)
        self._guard_reserved("delete_model_version_tag", name, key, version)
        event = self.governor.event(
            "delete_model_version_tag",
            name,
            version=version,
            tag_key=key,
            facts=self._facts(name, version),
            context=raw,
        )
        return self._governed(
            event, lambda: self.inner.delete_model_version_tag(name, version, key)
        )

    def transition_model_version_stage(self, name, version, stage, archive_existing_versions):
        version, raw = self._version(version)
        event = self.governor.event(
            "transition_stage",
            name,
            version=version,
            stage=str(stage),
            facts=self._facts(name, version),
            context={"archive_existing_versions": bool(archive_existing_versions), **raw},
        )
        return self._governed(
            event,
            lambda: self.inner.transition_model_version_stage(
                name, version, stage, archive_existing_versions
            ),
            also=lambda conn, seq, _r: history.insert_move(
                conn,
                model=name,
                stage=str(stage),
                version=str(version),
                previous_version=None,
                kind="stage",
                actor=event.actor,
                audit_seq=seq,
                workspace=event.workspace,
            ),
        )

    # -- aliases ------------------------------------------------------------------------------

    def set_registered_model_alias(self, name, alias, version):
        version, raw = self._version(version)
        context = current_action_context()
        event = self.governor.event(
            "set_alias",
            name,
            version=version,
            alias=alias,
            facts=self._facts(name, version),
            context={**context, **raw},
        )
        before: dict[str, str | None] = {}

        def write():
            # Read under the model's write lock (held by `governed`), so history is exact.
            before["holder"] = self.holder_of(name, alias)
            _expect_holder(context, name, alias, before["holder"])
            return self.inner.set_registered_model_alias(name, alias, version)

        return self._governed(
            event,
            write,
            also=lambda conn, seq, _r: history.insert_move(
                conn,
                model=name,
                alias=alias,
                version=str(version),
                previous_version=before.get("holder"),
                kind="rollback" if context.get("rollback") else "set",
                actor=event.actor,
                audit_seq=seq,
                workspace=event.workspace,
            ),
        )

    def delete_registered_model_alias(self, name, alias):
        previous = self.holder_of(name, alias)
        event = self.governor.event(
            "delete_alias",
            name,
            alias=alias,
            version=previous,
            facts=self._facts(name, previous) if previous else None,
        )
        context = current_action_context()

        def write():
            _expect_holder(context, name, alias, self.holder_of(name, alias))
            return self.inner.delete_registered_model_alias(name, alias)

        return self._governed(
            event,
            write,
            also=lambda conn, seq, _r: history.insert_move(
                conn,
                model=name,
                alias=alias,
                version=None,
                previous_version=previous,
                kind="delete",
                actor=event.actor,
                audit_seq=seq,
                workspace=event.workspace,
            ),
        )

    # -- reads --------------------------------------------------------------------------------

    def get_registered_model(self, name):
        return self.inner.get_registered_model(name)

    def search_registered_models(
        self, filter_string=None, max_results=None, order_by=None, page_token=None
    ):
        return self.inner.search_registered_models(filter_string, max_results, order_by, page_token)

    def get_latest_versions(self, name, stages=None):
        return self.inner.get_latest_versions(name, stages)

    def get_model_version(self, name, version):
        return self.inner.get_model_version(name, version)

    def get_model_version_download_uri(self, name, version):
        return self.inner.get_model_version_download_uri(name, version)

    def search_model_versions(
        self, filter_string=None, max_results=None, order_by=None, page_token=None
    ):
        return self.inner.search_model_versions(filter_string, max_results, order_by, page_token)

    def get_model_version_by_alias(self, name, alias):
        return self.inner.get_model_version_by_alias(name, alias)

    def get_webhook(self, *args, **kwargs):
        return self.inner.get_webhook(*args, **kwargs)

    def list_webhooks(self, *args, **kwargs):
        return self.inner.list_webhooks(*args, **kwargs)

    def list_webhooks_by_event(self, *args, **kwargs):
        return self.inner.list_webhooks_by_event(*args, **kwargs)

    # -- webhooks (governed: the event's model is the webhook's name, or "*") -----------------

    def _webhook_event(self, action: str, webhook_id: str | None, **context: Any) -> Any:
        """The event of a webhook action; the webhook's current name is its model."""
        name = context.pop("name", None)
        if name is None and webhook_id is not None:
            try:
                name = self.inner.get_webhook(webhook_id).name
            except MlflowException:  # unknown: MLflow's own write answers RESOURCE_DOES_NOT_EXIST
                name = None
        if webhook_id is not None:
            context["webhook_id"] = webhook_id
        # Never the secret: audit details are readable by everyone who reads the log.
        return self.governor.event(
            action, name or "*", context={k: v for k, v in context.items() if v is not None}
        )

    def create_webhook(self, name, url, events, description=None, secret=None, status=None):
        event = self._webhook_event(
            "create_webhook",
            None,
            name=name,
            url=url,
            events=_event_names(events),
            status=_status_name(status),
        )
        return self._governed(
            event,
            lambda: self.inner.create_webhook(name, url, events, description, secret, status),
        )

    def update_webhook(
        self,
        webhook_id,
        name=None,
        description=None,
        url=None,
        events=None,
        secret=None,
        status=None,
    ):
        event = self._webhook_event(
            "update_webhook",
            webhook_id,
            new_name=name,
            url=url,
            events=_event_names(events),
            status=_status_name(status),
            secret_changed=True if secret is not None else None,
        )
        return self._governed(
            event,
            lambda: self.inner.update_webhook(
                webhook_id,
                name=name,
                description=description,
                url=url,
                events=events,
                secret=secret,
                status=status,
            ),
        )

    def delete_webhook(self, webhook_id):
        event = self._webhook_event("delete_webhook", webhook_id)
        return self._governed(event, lambda: self.inner.delete_webhook(webhook_id))

    def test_webhook(self, webhook_id, event=None):
        decided = self._webhook_event(
            "test_webhook", webhook_id, event=_event_names([event])[0] if event else None
        )
        return self._governed(decided, lambda: self.inner.test_webhook(webhook_id, event))

    def authorize_test_webhook(self, webhook_id: str) -> None:
        """Decide and audit a test of a webhook that MLflow's server then sends itself (its REST
        handler calls the delivery code, not the store): raises ``PolicyDenied`` when refused."""
        self._governed(self._webhook_event("test_webhook", webhook_id), lambda: None)


def _event_names(events: Any) -> list[str] | None:
    """Webhook events as ``entity.action`` strings (what a policy or a reader of the log sees)."""
    if events is None:
        return None
    return [str(e) if not hasattr(e, "entity") else f"{e.entity}.{e.action}" for e in events]


def _status_name(status: Any) -> str | None:
    return None if status is None else str(getattr(status, "value", status))


def _is_reserved(key: str) -> bool:
    # Case and surrounding blanks do not make another namespace: " Steward.x" is reserved too.
    return str(key).strip().lower().startswith(RESERVED_TAG_PREFIX)


def _version_tags(ctx: Any, name: str, version: str) -> dict[str, str] | None:
    """The tags of registered version ``name``/``version`` (``None``: no such version)."""
    try:
        return dict(ctx.model_version(name, version)[2])
    except FactUnavailable:
        return None


def _version_tag(key: str, value: str) -> Any:
    from mlflow.entities.model_registry import ModelVersionTag

    return ModelVersionTag(key, value)


def _expect_holder(context: Mapping[str, Any], name: str, alias: str, holder: str | None) -> None:
    """With ``action_context(expect_holder=V)``, refuse to move ``alias`` unless V holds it now
    (read under the model's write lock): a decision taken on an older state must not apply."""
    expected = context.get("expect_holder")
    if expected is not None and str(expected) != str(holder):
        raise MlflowException(
            f"@{alias} on {name!r} is held by {holder or 'nobody'} now, not by version "
            f"{expected} as when this move was decided; nothing was changed",
            error_code=ABORTED,
        )


def _governed_inner_uri(store_uri: str) -> str:
    """The inner URI of a ``steward+<inner>`` store URI (any other is refused)."""
    if not store_uri.startswith(STEWARD_PREFIX):
        raise RegistryURIError(f"{store_uri!r} is not a steward+<inner> registry URI")
    return inner_uri(store_uri)


def build_governed_store(
    store_uri: str,
    tracking_uri: str | None = None,
    *,
    config: StewardConfig | None = None,
    pm: StewardPluginManager | None = None,
) -> GovernedRegistryStore:
    """Entry point for group ``mlflow.model_registry_store`` (scheme ``steward+<inner>``).

    MLflow calls it with the URIs only; then the configuration is found as usual
    (``MLFLOW_STEWARD_CONFIG``, ``./steward.yaml``) and the default plugin manager is used.
    """
    inner = _governed_inner_uri(store_uri)
    if inner.split(":", 1)[0] in ("http", "https"):
        raise RegistryURIError(
            f"{store_uri!r}: steward does not wrap a remote MLflow server on the client side, "
            "because any client could switch to the plain URI and bypass it. Enforce on the server "
            "instead (`mlflow server --app-name steward ...`) and use the plain "
            f"{inner!r} URI on clients."
        )
    db.sql_uri(inner)  # a clear error for a URI steward cannot keep its tables in
    compat.require_tested_mlflow("steward's governed registry store", inner)
    inner_store = _mlflow_adapter.build_registry_store(inner, tracking_uri)
    governor = Governor(
        registry_uri=inner, inner_store=inner_store, tracking_uri=tracking_uri, pm=pm, config=config
    )
    return GovernedRegistryStore(store_uri, tracking_uri, inner_store, governor)
