"""The governor: turns an action into an event, decides, writes, and records — in that order."""

from __future__ import annotations

import getpass
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TypeVar

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import ABORTED, PERMISSION_DENIED
from sqlalchemy.engine import Connection

from mlflow_steward import db
from mlflow_steward.config import StewardConfig, load_config
from mlflow_steward.errors import StewardError
from mlflow_steward.governance import recovery
from mlflow_steward.governance.audit import AuditEntry, AuditLog
from mlflow_steward.governance.engine import Decision, PolicyEngine, PolicyOutcome
from mlflow_steward.governance.events import ActionEvent
from mlflow_steward.governance.facts import MlflowContext
from mlflow_steward.plugins.manager import StewardPluginManager, get_plugin_manager

_logger = logging.getLogger(__name__)

ACTOR_ENV = "MLFLOW_STEWARD_ACTOR"
#: Tries to append the audit entry of a write that was already applied.
AUDIT_ATTEMPTS = 3
T = TypeVar("T")

_action_context: ContextVar[Mapping[str, Any] | None] = ContextVar(
    "steward_action_context", default=None
)


@contextmanager
def action_context(**context: Any) -> Iterator[None]:
    """Attach context (e.g. ``rollback=True``) to the governed actions made inside the block."""
    token = _action_context.set({**(_action_context.get() or {}), **context})
    try:
        yield
    finally:
        _action_context.reset(token)


def current_action_context() -> dict[str, Any]:
    return dict(_action_context.get() or {})


#: The authenticated identity of the request being served (set by the server app per request).
_request_actor: ContextVar[str | None] = ContextVar("steward_request_actor", default=None)


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Governed actions inside the block are made by ``actor`` (steward's own automation, e.g.
    ``steward-monitor``): policies see that actor and the audit log records it."""
    token = _request_actor.set(actor)
    try:
        yield
    finally:
        _request_actor.reset(token)


#: The audit sequence numbers recorded while serving the current request (server app).
_request_audit: ContextVar[list[int] | None] = ContextVar("steward_request_audit", default=None)


class PolicyDenied(MlflowException):
    """A governed action was refused. Error code ``PERMISSION_DENIED`` (HTTP 403): never retried."""

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        super().__init__(decision.message(), error_code=PERMISSION_DENIED)


class GovernanceUnavailable(MlflowException):
    """Steward could not reach a decision (its database, a fact lookup): the action is refused
    with ``PERMISSION_DENIED`` (never a 5xx, which MLflow clients would retry), fail closed."""

    def __init__(self, event: ActionEvent, error: BaseException) -> None:
        self.error = error
        super().__init__(
            f"refused by steward: {event.action} on {event.target} by {event.actor}: steward "
            f"could not decide ({type(error).__name__}: {error}); refused because governance "
            "fails closed",
            error_code=PERMISSION_DENIED,
        )


def default_actor() -> str:
    """The request's authenticated identity in the server, else ``MLFLOW_STEWARD_ACTOR``, else the
    operating-system user."""
    return _request_actor.get() or os.environ.get(ACTOR_ENV) or getpass.getuser()


class Governor:
    """Policy engine + audit log + observers for one registry database."""

    def __init__(
        self,
        *,
        registry_uri: str,
        inner_store: Any,
        tracking_uri: str | None,
        pm: StewardPluginManager | None = None,
        config: StewardConfig | None = None,
    ) -> None:
        self._pm = pm
        self.config = config if config is not None else load_config()
        # Built now, so that a bad configuration fails when the store is built, not at first use.
        self._engine = (self.pm, PolicyEngine(self.pm, self.config))
        self.db_engine = db.get_engine(registry_uri)
        self.audit = AuditLog(self.db_engine)
        self.ctx = MlflowContext(inner_store, tracking_uri, self.db_engine)

    @property
    def pm(self) -> StewardPluginManager:
        """The manager given, else the process's default one (which ``register_plugin`` renews)."""
        return self._pm if self._pm is not None else get_plugin_manager()

    @property
    def policies(self) -> PolicyEngine:
        pm = self.pm
        if self._engine[0] is not pm:
            self._engine = (pm, PolicyEngine(pm, self.config))
        return self._engine[1]

    def actor(self) -> str:
        return self.pm.hooks.resolve_actor(default=default_actor())

    def event(self, action: str, model: str, **fields: Any) -> ActionEvent:
        return ActionEvent(
            action=action,
            model=model,
            actor=fields.pop("actor", None) or self.actor(),
            time=datetime.now(UTC),
            **fields,
        )

    def decide(self, event: ActionEvent) -> Decision:
        """The decision without writing anything (a dry run)."""
        return self.policies.decide(event)

    def record(
        self,
        event: ActionEvent,
        decision: Decision,
        outcome: str,
        *,
        version: str | None = None,
        also: Callable[[Connection, int], None] | None = None,
    ) -> AuditEntry:
        entry = self.audit.append(
            actor=event.actor,
            action=event.action,
            model=event.model,
            version=version if version is not None else event.version,
            alias=event.alias,
            details=event.details(),
            decision="allowed" if decision.allowed else "refused",
            outcome=outcome,
            reasons=[o.to_dict() for o in decision.outcomes],
            also=also,
        )
        recorded = _request_audit.get()
        if recorded is not None:
            recorded.append(entry.seq)
        self.pm.hooks.after_decision(event=event, decision=decision)
        return entry

    def refuse(self, event: ActionEvent, policy: str, reason: str) -> PolicyDenied:
        """Record and return (for raising) a refusal by steward itself (reserved tags, ...)."""
        decision = Decision(event, (PolicyOutcome(policy, policy, "steward", False, reason),))
        self.record(event, decision, "refused")
        return PolicyDenied(decision)

    def governed(
        self,
        event: ActionEvent,
        write: Callable[[], T],
        *,
        version_of: Callable[[T], str | None] | None = None,
        also: Callable[[Connection, int, T], None] | None = None,
    ) -> T:
        """Decide; if refused, record and raise :class:`PolicyDenied`; else write, then record.

        The whole sequence holds the model's write lock, so the facts a policy decided on (the
        current alias holder, approvals) are still true when the write happens.
        """
        return self.apply(event, write, version_of=version_of, also=also)[0]

    def apply(
        self,
        event: ActionEvent,
        write: Callable[[], T],
        *,
        version_of: Callable[[T], str | None] | None = None,
        also: Callable[[Connection, int, T], None] | None = None,
        outside_audit: bool = True,
    ) -> tuple[T, Decision]:
        """:meth:`governed`, also returning the decision that allowed the write.

        ``outside_audit=False`` says the whole effect is written by ``also`` in the audit
        transaction (nothing can be applied without its entry), so no pending row is needed.
        """
        with ExitStack() as stack:
            try:
                stack.enter_context(db.write_lock(self.db_engine, event.model))
                if db.serializes_writers(self.db_engine):  # else a pending row may be live
                    self.recover(event.model)
            except Exception as exc:
                raise GovernanceUnavailable(event, exc) from exc
            return self._governed(
                event, write, version_of=version_of, also=also, outside_audit=outside_audit
            )

    def recover_all(self) -> list[AuditEntry]:
        """Recover the interrupted writes of every model, each under its model's write lock."""
        if not db.serializes_writers(self.db_engine):
            raise StewardError(
                f"steward cannot lock a model on {self.db_engine.dialect.name} (only PostgreSQL "
                "and SQLite files), so it cannot tell an interrupted write from a running one"
            )
        done: list[AuditEntry] = []
        for model in dict.fromkeys(p.model for p in recovery.pending(self.db_engine)):
            with db.write_lock(self.db_engine, model):
                done += self.recover(model)
        return done

    def recover(self, model: str) -> list[AuditEntry]:
        """Append the audit entries of ``model``'s interrupted writes (see ``recovery``).

        Call with the model's write lock held: then every pending row of the model belongs to a
        writer that stopped. Returns the entries appended."""
        rows = recovery.pending(self.db_engine, model)
        if not rows:
            return []

        def audited_versions() -> set[str]:
            return {
                str(e.version)
                for e in self.audit.entries(model=model)
                if e.action == "create_model_version" and e.outcome == "applied"
            }

        done = []
        for row in rows:
            try:
                applied, version = recovery.check(self.ctx.registry, row, audited_versions)
            except MlflowException as exc:
                # The registry answered but cannot say (e.g. the version is gone): record that.
                # A database or network error propagates instead: the row stays for a retry and
                # the write that triggered the recovery is refused (fail closed).
                _logger.warning("could not check interrupted write %s: %s", row, exc)
                applied, version = None, row.version
            entry = recovery.complete(self.audit, row, applied, version)
            _logger.warning(
                "steward recovered an interrupted %s on %s (writer %s): %s",
                row.action,
                row.model,
                row.owner,
                entry.outcome,
            )
            done.append(entry)
        return done

    def _governed(
        self,
        event: ActionEvent,
        write: Callable[[], T],
        *,
        version_of: Callable[[T], str | None] | None,
        also: Callable[[Connection, int, T], None] | None,
        outside_audit: bool,
    ) -> tuple[T, Decision]:
        pending_id: int | None = None
        try:
            decision = self.decide(event)
            if not decision.allowed:
                self.record(event, decision, "refused")
            elif outside_audit:
                pending_id = recovery.insert(
                    self.db_engine,
                    actor=event.actor,
                    action=event.action,
                    model=event.model,
                    version=event.version,
                    alias=event.alias,
                    details=event.details(),
                    reasons=[o.to_dict() for o in decision.outcomes],
                )
        except Exception as exc:
            raise GovernanceUnavailable(event, exc) from exc
        if not decision.allowed:
            raise PolicyDenied(decision)

        def completed(conn: Connection, seq: int, result: Any = None, *, ok: bool) -> None:
            if pending_id is not None:
                recovery.delete(conn, pending_id)
            if ok and also is not None:
                also(conn, seq, result)

        try:
            result = write()
        except Exception as exc:
            self.record(
                event,
                decision,
                f"failed: {type(exc).__name__}: {exc}",
                also=lambda conn, seq: completed(conn, seq, ok=False),
            )
            raise
        version = version_of(result) if version_of else None
        for attempt in range(1, AUDIT_ATTEMPTS + 1):
            try:
                self.record(
                    event,
                    decision,
                    "applied",
                    version=version,
                    also=lambda conn, seq: completed(conn, seq, result, ok=True),
                )
                return result, decision
            except Exception as exc:
                _logger.exception(
                    "audit append %d/%d failed for %s", attempt, AUDIT_ATTEMPTS, event.target
                )
                if attempt == AUDIT_ATTEMPTS:
                    # The write happened and cannot be taken back in general. Say so, with a
                    # code MLflow clients do not retry (409), so it is not applied twice.
                    raise MlflowException(
                        f"{event.action} on {event.target} by {event.actor} was applied, but "
                        f"steward could not add it to the audit log yet ({type(exc).__name__}: "
                        f"{exc}); the next governed write on {event.model!r} adds it (or run "
                        "`steward audit recover`)",
                        error_code=ABORTED,
                    ) from exc
                time.sleep(0.2 * attempt)
        raise AssertionError("unreachable")
