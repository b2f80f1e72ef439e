"""The governor: turns an action into an event, decides, writes, and records — in that order."""

from __future__ import annotations

import functools
import getpass
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, nullcontext
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TypeVar

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import ABORTED, PERMISSION_DENIED
from sqlalchemy.engine import Connection

from mlflow_steward import _mlflow_adapter
from mlflow_steward.config import StewardConfig, load_config
from mlflow_steward.env import ACTOR_ENV
from mlflow_steward.errors import StewardError
from mlflow_steward.governance import recovery
from mlflow_steward.governance.engine import PolicyEngine
from mlflow_steward.governance.facts import MlflowContext
from mlflow_steward.plugins.events import DEFAULT_WORKSPACE, ActionEvent, Decision, PolicyOutcome
from mlflow_steward.plugins.manager import StewardPluginManager, get_plugin_manager
from mlflow_steward.records import db, locks, pending_writes
from mlflow_steward.records.audit import AuditEntry, AuditLog

_logger = logging.getLogger(__name__)

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


class _RecoverFirst(Exception):
    """Interrupted writes of the model were found in the audit transaction: recover them, then
    decide and write again."""


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


#: The process's operating-system user, looked up once (without USER or LOGNAME set, each lookup
#: reads the password database).
_os_user = functools.cache(getpass.getuser)


def default_actor() -> str:
    """The request's authenticated identity in the server, else ``MLFLOW_STEWARD_ACTOR``, else the
    operating-system user."""
    return _request_actor.get() or os.environ.get(ACTOR_ENV) or _os_user()


def _lock_key(event: ActionEvent) -> str:
    """The write lock of the event's registered model: one per model and workspace (two
    workspaces may each have a model of the same name)."""
    if event.workspace == DEFAULT_WORKSPACE:
        return event.model
    # MLflow refuses "/" in model names, so no model name of the default workspace can look
    # like this key (and PostgreSQL text cannot hold the NUL a separator might be).
    return f"{event.workspace}/{event.model}"


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
        """The identity of the action. In the server, the request's identity (authenticated, or
        ``anonymous``) and, inside ``acting_as``, steward's own automation are final: no plugin's
        ``steward_resolve_actor`` may replace them (a plugin answering a fixed name would make
        every user that name and void four-eyes approvals). Elsewhere the hook decides, from
        ``MLFLOW_STEWARD_ACTOR`` or the operating-system user."""
        fixed = _request_actor.get()
        if fixed:
            return fixed
        return self.pm.hooks.resolve_actor(default=default_actor())

    def workspace(self) -> str:
        """The MLflow workspace of the action being served (``default`` without workspaces)."""
        return _mlflow_adapter.active_workspace(self.ctx.registry)

    def event(self, action: str, model: str, **fields: Any) -> ActionEvent:
        return ActionEvent(
            action=action,
            model=model,
            actor=fields.pop("actor", None) or self.actor(),
            time=datetime.now(UTC),
            workspace=fields.pop("workspace", None) or self.workspace(),
            **fields,
        )

    def decide(self, event: ActionEvent) -> Decision:
        """The decision without writing anything (a dry run)."""
        with _mlflow_adapter.shared_reads():
            return self.policies.decide(event)

    def _decide_on(self, event: ActionEvent, conn: Connection) -> tuple[Decision, bool]:
        """The decision, its reads of the registry's database made on ``conn`` (the connection
        the write will use: no second pool checkout, and its page cache is warm for the write).
        Also returns whether ``conn`` is still the caller's: not when a reader still used it
        when the decision ended (a plugin policy past its timeout), which then closes it."""
        conn.execution_options(**{db.READ_ONLY: True})
        with _mlflow_adapter.shared_reads(lend=conn) as scope:
            decision = self.policies.decide(event)
        if scope.lent_kept:
            return decision, False
        conn.rollback()  # the reads' transaction (SQLite: DEFERRED, no write lock)
        conn.execution_options(**{db.READ_ONLY: False})
        return decision, True

    def record(
        self,
        event: ActionEvent,
        decision: Decision,
        outcome: str,
        *,
        version: str | None = None,
        also: Callable[[Connection, int], None] | None = None,
        conn: Connection | None = None,
    ) -> AuditEntry:
        """Append the decision's entry and tell the observers. With ``conn`` (an open
        transaction) the entry is written there, and the caller calls :meth:`_recorded` once
        that transaction has committed."""
        entry = self.audit.append_decision(
            event, decision, outcome, version=version, also=also, conn=conn
        )
        if conn is None:
            self._recorded(event, decision, entry)
        return entry

    def _recorded(self, event: ActionEvent, decision: Decision, entry: AuditEntry) -> None:
        """What follows a committed audit entry: the server's response header, observers."""
        recorded = _request_audit.get()
        if recorded is not None:
            recorded.append(entry.seq)
        self.pm.hooks.after_decision(event=event, decision=decision)

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
        join: Any = None,
    ) -> T:
        """Decide; if refused, record and raise :class:`PolicyDenied`; else write, then record.

        The whole sequence holds the model's write lock, so the facts a policy decided on (the
        current alias holder, approvals) are still true when the write happens.
        """
        return self.apply(event, write, version_of=version_of, also=also, join=join)[0]

    def apply(
        self,
        event: ActionEvent,
        write: Callable[[], T],
        *,
        version_of: Callable[[T], str | None] | None = None,
        also: Callable[[Connection, int, T], None] | None = None,
        outside_audit: bool = True,
        join: Any = None,
    ) -> tuple[T, Decision]:
        """:meth:`governed`, also returning the decision that allowed the write.

        How the write and its audit entry stay together:

        - ``join``: MLflow's SQL registry store making the write (prepared with
          ``_mlflow_adapter.install_session_joining``). Its sessions join the audit
          transaction: the write and its entry commit together, or neither does.
        - ``outside_audit=False``: the whole effect is written by ``also`` in the audit
          transaction, the same guarantee.
        - otherwise (a write outside the database: a deployment, ...): a pending row is
          committed before the write, so that an interrupted write is found and recorded later
          (``governance/recovery.py``).
        """
        in_transaction = join is not None or not outside_audit
        recoverable = locks.serializes_writers(self.db_engine)  # else a pending row may be live
        kwargs: dict[str, Any] = dict(
            version_of=version_of, also=also, in_transaction=in_transaction, join=join
        )
        if in_transaction and locks.locks_in_transaction(self.db_engine):
            # PostgreSQL: the model's lock is taken in the write's own transaction and released
            # by its commit (one connection, no separate lock and unlock round trips).
            try:
                conn = locks.lock_connection(self.db_engine)
            except Exception as exc:
                raise GovernanceUnavailable(event, exc) from exc
            with conn:
                try:
                    locks.lock_in_transaction(conn, _lock_key(event))
                    if pending_writes.any_pending(conn, event.model):
                        self.recover(event.model)
                except Exception as exc:
                    raise GovernanceUnavailable(event, exc) from exc
                return self._governed(event, write, look_for_pending=False, conn=conn, **kwargs)
        with ExitStack() as stack:
            try:
                stack.enter_context(locks.write_lock(self.db_engine, _lock_key(event)))
                if recoverable and not in_transaction:
                    self.recover(event.model)
            except Exception as exc:
                raise GovernanceUnavailable(event, exc) from exc
            try:
                # A write in the audit transaction looks for interrupted writes there (one
                # query on a connection it holds anyway) and only then recovers them.
                return self._governed(event, write, look_for_pending=recoverable, **kwargs)
            except _RecoverFirst:
                try:
                    self.recover(event.model)
                except Exception as exc:
                    raise GovernanceUnavailable(event, exc) from exc
                return self._governed(event, write, look_for_pending=False, **kwargs)

    def recover_all(self) -> list[AuditEntry]:
        """Recover the interrupted writes of every model, each under its model's write lock."""
        if not locks.serializes_writers(self.db_engine):
            raise StewardError(
                f"steward cannot lock a model on {self.db_engine.dialect.name} (only PostgreSQL "
                "and SQLite files), so it cannot tell an interrupted write from a running one"
            )
        done: list[AuditEntry] = []
        for model in dict.fromkeys(p.model for p in pending_writes.pending(self.db_engine)):
            with locks.write_lock(self.db_engine, model):
                done += self.recover(model)
        return done

    def recover(self, model: str) -> list[AuditEntry]:
        """Append the audit entries of ``model``'s interrupted writes (see ``recovery``).

        Call with the model's write lock held: then every pending row of the model belongs to a
        writer that stopped. Returns the entries appended."""
        rows = pending_writes.pending(self.db_engine, model)
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
        in_transaction: bool,
        join: Any,
        look_for_pending: bool,
        conn: Connection | None = None,
    ) -> tuple[T, Decision]:
        with ExitStack() as stack:
            # SQLite and others: the write's connection, checked out now for the decision's
            # reads (its transaction begins after the decision).
            own = None
            if in_transaction and conn is None:
                try:
                    own = stack.enter_context(self.db_engine.connect())
                except Exception as exc:  # the database is unreachable: fail closed, say why
                    raise GovernanceUnavailable(event, exc) from exc
            pending_id: int | None = None
            try:
                if own is not None:
                    decision, kept = self._decide_on(event, own)
                    if not kept:  # a reader still uses it, and closes it
                        stack.pop_all()
                        own = None
                else:
                    decision = self.decide(event)
                if not decision.allowed:
                    self.record(event, decision, "refused")
                elif not in_transaction:
                    pending_id = pending_writes.insert(self.db_engine, event, decision)
            except Exception as exc:
                raise GovernanceUnavailable(event, exc) from exc
            if not decision.allowed:
                raise PolicyDenied(decision)
            if in_transaction:
                return self._write_in_transaction(
                    event, decision, write, join, version_of, also, look_for_pending, conn or own
                ), decision
        return self._write_outside(event, decision, pending_id, write, version_of, also), decision

    def _write_outside(
        self,
        event: ActionEvent,
        decision: Decision,
        pending_id: int | None,
        write: Callable[[], T],
        version_of: Callable[[T], str | None] | None,
        also: Callable[[Connection, int, T], None] | None,
    ) -> T:
        """A write outside the audit transaction: its pending row (``pending_id``) was
        committed before it, and is deleted in the transaction that appends its entry."""

        def completed(conn: Connection, seq: int, result: Any = None, *, ok: bool) -> None:
            if pending_id is not None:
                pending_writes.delete(conn, pending_id)
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
                return result
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

    def _write_in_transaction(
        self,
        event: ActionEvent,
        decision: Decision,
        write: Callable[[], T],
        join: Any,
        version_of: Callable[[T], str | None] | None,
        also: Callable[[Connection, int, T], None] | None,
        look_for_pending: bool,
        conn: Connection | None = None,
    ) -> T:
        """The write and its audit entry in one transaction: both are committed, or neither.

        ``conn``: a connection whose transaction is open (and holds the model's lock), or one
        of the caller's with no transaction open; else one of the engine's. Committed here,
        before observers hear of the entry.
        """
        wrote = False
        stack = ExitStack()
        if conn is None or not conn.in_transaction():
            stack.enter_context(locks.transaction_lock(self.db_engine))
        if conn is None:
            conn = stack.enter_context(self.db_engine.connect())
        try:
            try:
                if not conn.in_transaction():
                    # Begun here, so that MLflow's sessions join it (and do not commit their own).
                    conn.begin()
                if look_for_pending and pending_writes.any_pending(conn, event.model):
                    raise _RecoverFirst
                joined = (
                    _mlflow_adapter.sessions_joined(join, conn, sqlite_pragmas_set=True)
                    if join is not None
                    else None
                )
                with joined or nullcontext():
                    result = write()
                wrote = True
                entry = self.record(
                    event,
                    decision,
                    "applied",
                    version=version_of(result) if version_of else None,
                    also=(lambda c, seq: also(c, seq, result)) if also is not None else None,
                    conn=conn,
                )
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                stack.close()
        except _RecoverFirst:
            raise
        except Exception as exc:
            # Rolled back: nothing of the write is in the registry. Say so on the log.
            problem = f"{type(exc).__name__}: {exc}"
            try:
                self.record(
                    event,
                    decision,
                    f"failed: steward could not record the write ({problem}); nothing was changed"
                    if wrote
                    else f"failed: {problem}",
                )
            except Exception:
                _logger.exception("could not record the failed %s", event.target)
            if wrote:
                raise MlflowException(
                    f"{event.action} on {event.target} by {event.actor} was not applied: steward "
                    f"could not add it to the audit log ({problem}); nothing was changed",
                    error_code=ABORTED,
                ) from exc
            raise
        self._recorded(event, decision, entry)
        return result
